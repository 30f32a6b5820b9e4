"""`run_pipeline`: stage order, up-to-date skipping, re-runs after changes, GPU stages skipped
visibly, failures, manifest and report. Stages are fakes that write
files where the real ones do."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

import qtoolkit.pipeline.run as run_mod
from qtoolkit.errors import QtoolError
from qtoolkit.pipeline.run import DEFAULT_STAGES, STAGE_ORDER, run_pipeline, select_stages
from qtoolkit.recipe import Recipe, load_recipe

NO_GPU = "needs TensorRT and an NVIDIA GPU, which this machine lacks"
WRITES = {
    "finetune": {"finetuned/model.safetensors": "w"},
    "calibrate": {"calibrated/amax.json": "{}"},
    "ptq-sweep": {
        "calibrated/amax.json": "{}",
        "ptq_sweep/results.md": "| method | accuracy |\n|---|---|\n| max | 0.5 |\n",
    },
    "qat": {"qat/model.safetensors": "q"},
    "export-onnx": {"export/model.onnx": "onnx"},
    "build-engine": {"engine/model.engine": "plan"},
    "benchmark": {
        "bench/results.md": "# Benchmark: t\n\n| backend |\n|---|\n| ort-int8 |\n\n"
        "![accuracy against p50 latency](accuracy_latency.png)\n"
    },
}


def fake_registry(log: list[str], fail: str | None = None):
    def make(name):
        def stage(recipe):
            log.append(name)
            if name == fail:
                raise QtoolError(f"{name} broke")
            for rel, text in WRITES[name].items():
                path = recipe.output_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            return SimpleNamespace(notices=[f"{name} said hello"])

        return stage

    return {name: make(name) for name in STAGE_ORDER}


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setattr(run_mod, "gpu_unavailable_reason", lambda: NO_GPU)


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "dev", "calib", "test"):
        (data / f"{name}.jsonl").write_text(json.dumps({"text": name, "label": 1}) + "\n")
    return data


def _recipe(tmp_path, files, **changes) -> Recipe:
    spec = {
        "name": "tiny-run",
        "output_dir": str(tmp_path / "out"),
        "data": {
            "train_file": str(files / "train.jsonl"),
            "eval_file": str(files / "dev.jsonl"),
            "calib_file": str(files / "calib.jsonl"),
            "test_file": str(files / "test.jsonl"),
        },
        "qat": {"epochs": 1},
    }
    for section, values in changes.items():
        spec[section] = {**spec.get(section, {}), **values}
    return Recipe.model_validate(spec)


def _status(outcome) -> dict[str, str]:
    return {r.name: r.status for r in outcome.stages}


def test_runs_configured_stages_in_order_and_skips_gpu_visibly(tmp_path, files):
    log, events = [], []
    recipe = _recipe(tmp_path, files)
    outcome = run_pipeline(
        recipe, registry=fake_registry(log), on_stage=lambda r: events.append((r.name, r.status))
    )
    assert log == ["finetune", "ptq-sweep", "qat", "export-onnx", "benchmark"]
    assert _status(outcome) == {
        "finetune": "ran",
        "calibrate": "not-configured",
        "ptq-sweep": "ran",
        "qat": "ran",
        "export-onnx": "ran",
        "build-engine": "skipped",
        "benchmark": "ran",
    }
    assert ("finetune", "running") in events and events[-1] == ("benchmark", "ran")
    assert ("build-engine", "skipped") in events

    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["build-engine"]["reason"] == NO_GPU
    assert stages["qat"]["notices"] == ["qat said hello"] and stages["qat"]["seconds"] >= 0
    assert (tmp_path / "out" / "qat" / "qtool-run.json").is_file()

    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| build-engine | skipped | 0.0 | {NO_GPU} |" in report
    assert f"- build-engine (skipped): {NO_GPU}" in report
    assert "From [ptq_sweep/results.md](ptq_sweep/results.md)." in report
    assert "| max | 0.5 |" in report and "| ort-int8 |" in report
    assert "![accuracy against p50 latency](bench/accuracy_latency.png)" in report
    assert "- [export/model.onnx](export/model.onnx)" in report


def test_up_to_date_stages_are_skipped_and_changes_rerun_what_depends_on_them(tmp_path, files):
    log: list[str] = []
    registry = fake_registry(log)
    run_pipeline(_recipe(tmp_path, files), registry=registry)

    log.clear()
    again = run_pipeline(_recipe(tmp_path, files), registry=registry)
    assert log == []
    assert {s for s, st in _status(again).items() if st == "up-to-date"} == {
        "finetune",
        "ptq-sweep",
        "qat",
        "export-onnx",
        "benchmark",
    }

    # A recipe change reruns its stage and everything after it, not what came before.
    log.clear()
    run_pipeline(_recipe(tmp_path, files, calib={"percentile": 99.9}), registry=registry)
    assert log == ["ptq-sweep", "qat", "export-onnx", "benchmark"]
    log.clear()
    run_pipeline(_recipe(tmp_path, files, calib={"percentile": 99.9}), registry=registry)
    assert log == []

    # Same path, new content: the data file's checksum changed.
    (files / "test.jsonl").write_text(json.dumps({"text": "other", "label": 0}) + "\n")
    log.clear()
    run_pipeline(_recipe(tmp_path, files, calib={"percentile": 99.9}), registry=registry)
    assert log == ["ptq-sweep", "qat", "export-onnx", "benchmark"]

    # An output changed behind the run's back (e.g. a manual qtool export-onnx).
    (tmp_path / "out" / "export" / "model.onnx").write_text("re-exported by hand")
    log.clear()
    run_pipeline(_recipe(tmp_path, files, calib={"percentile": 99.9}), registry=registry)
    assert log == ["export-onnx", "benchmark"]

    log.clear()
    forced = run_pipeline(
        _recipe(tmp_path, files, calib={"percentile": 99.9}), registry=registry, force=True
    )
    assert log == ["finetune", "ptq-sweep", "qat", "export-onnx", "benchmark"]
    assert _status(forced)["build-engine"] == "skipped"


def test_only_runs_one_stage(tmp_path, files):
    log: list[str] = []
    registry = fake_registry(log)
    recipe = _recipe(tmp_path, files)
    run_pipeline(recipe, registry=registry)
    log.clear()
    outcome = run_pipeline(recipe, registry=registry, only="benchmark")
    assert log == [] and _status(outcome)["benchmark"] == "up-to-date"
    assert {r.reason for r in outcome.stages if r.name != "benchmark"} == {"--only benchmark"}
    run_pipeline(recipe, registry=registry, only="benchmark", force=True)
    assert log == ["benchmark"]
    with pytest.raises(QtoolError, match="unknown stages"):
        run_pipeline(recipe, registry=registry, only="deploy")


def test_every_stage_has_a_function():
    # Stages are plain functions imported with the module: a missing one fails here, at import.
    assert tuple(DEFAULT_STAGES) == STAGE_ORDER
    assert all(callable(fn) for fn in DEFAULT_STAGES.values())


def test_a_failing_stage_stops_the_run_after_writing_the_manifest(tmp_path, files):
    log: list[str] = []
    with pytest.raises(QtoolError, match="qat broke"):
        run_pipeline(_recipe(tmp_path, files), registry=fake_registry(log, fail="qat"))
    assert log == ["finetune", "ptq-sweep", "qat"]
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    status = {s["name"]: (s["status"], s["reason"]) for s in manifest["stages"]}
    assert status["qat"] == ("failed", "qat broke")
    assert status["export-onnx"] == ("not-run", "qat failed")
    assert not (tmp_path / "out" / "qat" / "qtool-run.json").exists()


def test_manifest_records_versions_checksums_and_recipe_hash(tmp_path, files):
    run_pipeline(_recipe(tmp_path, files), registry=fake_registry([]))
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    expected = hashlib.sha256((files / "train.jsonl").read_bytes()).hexdigest()
    assert manifest["inputs"]["data.train_file"]["sha256"] == expected
    assert set(manifest["inputs"]) == {f"data.{k}_file" for k in ("train", "eval", "calib", "test")}
    for dist in ("torch", "transformers", "onnx", "onnxruntime", "pytorch-quantization"):
        assert manifest["versions"][dist], dist
    assert "qtoolkit" in manifest["versions"] and "tensorrt" in manifest["versions"]
    assert len(manifest["recipe_sha256"]) == 64 and manifest["recipe"] == "tiny-run"


def test_stage_selection(tmp_path, files):
    calib_only = Recipe.model_validate({"data": {"calib_file": str(files / "calib.jsonl")}})
    chosen = [s for s, why in select_stages(calib_only).items() if why is None]
    assert chosen == ["calibrate", "export-onnx", "build-engine", "benchmark"]
    assert select_stages(calib_only)["qat"] == "the recipe has no qat section"

    # Recipe.stages picks the stages; they run in pipeline order whatever order it lists.
    staged = Recipe.model_validate({"stages": ["benchmark", "calibrate"]})
    assert [s for s, why in select_stages(staged).items() if why is None] == [
        "calibrate",
        "benchmark",
    ]
    assert select_stages(staged)["qat"] == "not in recipe.stages"
    assert select_stages(staged, only="qat")["qat"] is None
    with pytest.raises(QtoolError, match="stages.0"):
        load_recipe(None, ["stages=[deploy]"])
