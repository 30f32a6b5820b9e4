"""OpenVINO as a runtime: runner vs ONNX Runtime on a tiny QDQ export, benchmark rows, evaluate
--runtime openvino, build-engine --runtime openvino; and a clean skip when it is not installed."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from qtoolkit.bench.targets import parse_target, unavailable_reason
from qtoolkit.cli import app
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

from ..conftest import SENTENCES


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_bert_dir, calib_jsonl):
    """A qtool export folder (QDQ model.onnx + model.fp32.onnx, tokenizer, config, manifest)."""
    root = tmp_path_factory.mktemp("ov")
    cal = _run("calibrate", "--model", tiny_bert_dir, "--calib-file", calib_jsonl, "-o", root / "c")
    assert cal.exit_code == 0, cal.output
    out = root / "export" / "model.onnx"
    ex = _run("export-onnx", root / "c", "-o", out, "--fp32-baseline", "--calib-file", calib_jsonl)
    assert ex.exit_code == 0, ex.output
    return out.parent


@pytest.fixture(scope="module")
def recipe(export_dir, tiny_bert_dir, calib_jsonl, tmp_path_factory):
    test = tmp_path_factory.mktemp("ovdata") / "test.jsonl"
    rows = [{"text": s, "label": int("good" in s or "love" in s)} for s in SENTENCES]
    test.write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    return Recipe.model_validate(
        {
            "name": "tiny-ov",
            "output_dir": str(export_dir.parent),
            "model": {"path": str(tiny_bert_dir)},
            "data": {"test_file": str(test), "calib_file": str(calib_jsonl), "max_length": 16},
            "bench": {"batch_sizes": [1, 2], "seq_lengths": [8], "warmup": 1, "iterations": 3},
        }
    )


def _batch(seed: int = 0, rows: int = 4, length: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 100, (rows, length))
    mask = np.ones_like(ids)
    mask[1:, length // 2 :] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_openvino_missing_is_a_one_line_skip(export_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    from qtoolkit.runtime.ov_runner import OpenVinoRunner, RuntimeUnavailable

    target = parse_target(f"ov-int8={export_dir / 'model.onnx'}")
    reason = unavailable_reason(target)
    assert reason is not None and reason.startswith("OpenVINO is not installed: pip install")
    assert "\n" not in reason
    with pytest.raises(RuntimeUnavailable, match="not installed"):
        OpenVinoRunner(export_dir / "model.onnx")


def test_runner_matches_onnx_runtime_and_reads_back_its_precision(export_dir):
    pytest.importorskip("openvino")
    from qtoolkit.runtime import OpenVinoRunner, OrtRunner, Runner

    batch = _batch()
    fp32_ort = OrtRunner(export_dir / "model.fp32.onnx", threads=1)
    fp32_ov = OpenVinoRunner(export_dir / "model.fp32.onnx", 1, inference_precision="f32")
    assert isinstance(fp32_ov, Runner) and isinstance(fp32_ort, Runner)
    assert (fp32_ov.runtime, fp32_ov.device, fp32_ov.precision) == ("openvino", "cpu", "fp32")
    assert fp32_ov.int8_kernels == 0 and fp32_ort.precision == "fp32"
    ref, got = fp32_ort(batch)["logits"], fp32_ov(batch)["logits"]
    assert got.shape == ref.shape == (4, 2)
    np.testing.assert_allclose(got, ref, atol=1e-4)

    int8_ort = OrtRunner(export_dir / "model.onnx", threads=1)
    int8_ov = OpenVinoRunner(export_dir / "model.onnx", 1)
    details = int8_ov.details()
    # The Q/DQ pairs became int8 kernels; the rest runs in OpenVINO's default precision.
    assert int8_ov.precision == "int8" == int8_ort.precision and int8_ov.int8_kernels > 0
    assert details["inference_precision"] == ("bf16" if details["native_bf16"] else "fp32")
    assert details["requested_precision"] == "default"
    assert details["config"]["PERFORMANCE_HINT"] == "LATENCY"
    assert details["config"]["NUM_STREAMS"] == "1"
    assert details["config"]["INFERENCE_NUM_THREADS"] == "1"
    tolerance = 0.5 if not details["native_bf16"] else 1.0
    assert np.abs(int8_ov(batch)["logits"] - int8_ort(batch)["logits"]).max() < tolerance
    # prepare() binds once; the bound call runs the same inputs.
    call = int8_ov.prepare(batch)
    call()
    again = int8_ov(batch)["logits"]
    np.testing.assert_allclose(again, int8_ov(batch)["logits"])


def test_benchmark_has_openvino_rows_next_to_ort(export_dir, recipe):
    pytest.importorskip("openvino")
    from qtoolkit.pipeline.benchmark import run_benchmark

    backends = ["ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8"]
    outcome = run_benchmark(
        recipe.model_copy(
            update={"bench": recipe.bench.model_copy(update={"backends": backends, "threads": 1})}
        )
    )
    assert not outcome.skipped
    assert [r["backend"] for r in outcome.rows[:5]] == backends
    # one CPU family over the same ONNX files: the fastest float member is the baseline
    assert outcome.baselines == {"onnx-cpu": ["ort-fp32", "ov-fp32", "ort-fp32-fused"]}
    assert all("speedup" in r for r in outcome.rows)
    results = json.loads((outcome.output_dir / "results.json").read_text())
    runs = {t["name"]: t["runs_as"] for t in results["targets"]}
    assert runs["ov-fp32"]["inference_precision"] == "fp32" and runs["ov-int8"]["int8_kernels"]
    assert runs["ov-int8"]["precision"] == "int8" and runs["ort-int8"]["providers"]
    default = runs["ov-bf16"]["inference_precision"]
    assert default == ("bf16" if runs["ov-bf16"]["native_bf16"] else "fp32")
    if default != "bf16":
        assert any("no native bf16" in n for n in outcome.notices)
    assert results["machine"]["openvino"]
    md = (outcome.output_dir / "results.md").read_text()
    assert "Machine: " in md and f"- ov-bf16: openvino on cpu, {default}" in md
    accuracy = outcome.accuracy
    assert accuracy["ov-fp32"]["metrics"] == accuracy["ort-fp32"]["metrics"]


def test_evaluate_on_openvino_gives_the_onnx_runtime_accuracy(export_dir, recipe):
    pytest.importorskip("openvino")
    from qtoolkit.pipeline.evaluate import run_evaluate

    onnx_path = export_dir / "model.onnx"
    ort = run_evaluate(onnx_path, recipe, threads=1)
    ov = run_evaluate(onnx_path, recipe, threads=1, runtime="openvino")
    assert (ort.backend, ov.backend) == ("onnxruntime", "openvino")
    assert ov.extra["runs_as"]["precision"] == "int8"
    assert ov.metrics["accuracy"] == pytest.approx(ort.metrics["accuracy"], abs=1 / 16)
    assert "openvino int8 (inference precision" in ov.summary()
    with pytest.raises(QtoolError, match="runs on onnxruntime or openvino, not tensorrt"):
        run_evaluate(onnx_path, recipe, runtime="tensorrt")


def test_build_engine_openvino_writes_validated_ir(export_dir, recipe, tmp_path):
    pytest.importorskip("openvino")
    recipe_file = tmp_path / "r.yaml"
    data = recipe.data
    recipe_file.write_text(
        f"name: t\noutput_dir: {tmp_path / 'run'}\nbench: {{threads: 1}}\n"
        f"data: {{calib_file: {data.calib_file}, test_file: {data.test_file}, max_length: 16}}\n"
    )
    out = tmp_path / "ov"
    built = _run(
        "build-engine",
        export_dir / "model.onnx",
        "--runtime",
        "openvino",
        "-r",
        recipe_file,
        "-o",
        out,
    )
    assert built.exit_code == 0, built.output
    assert "validated against ONNX Runtime: max |OpenVINO - ort|" in built.output
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["format"] == "qtoolkit-openvino" and manifest["runs_as"]["int8_kernels"] > 0
    ev = _run("evaluate", out, "-r", recipe_file)  # the folder opens on OpenVINO
    assert ev.exit_code == 0, ev.output
    assert "openvino int8 (inference precision" in ev.output
    # The export folder itself is an input: refused before any work, in one line.
    inside = _run(
        "build-engine",
        export_dir / "model.onnx",
        "--runtime",
        "openvino",
        "-r",
        recipe_file,
        "-o",
        export_dir / "ov",
    )
    assert inside.exit_code != 0 and inside.output.startswith("error:")
    bad = _run("build-engine", export_dir / "model.onnx", "--runtime", "onnx")
    assert bad.exit_code != 0 and "--runtime must be tensorrt or openvino" in bad.output


def test_openvino_target_is_the_one_qdq_per_tensor_layout(export_dir, recipe, tmp_path):
    """`export.target: openvino` writes the graph OpenVINO runs fastest (the tensorrt layout,
    measured in scripts/bench_openvino.py); build-engine says so for a CPU-layout file."""
    import onnx

    calib = recipe.data.calib_file
    paths = {}
    for target in ("openvino", "onnxruntime"):
        paths[target] = tmp_path / target / "model.onnx"
        ex = _run("export-onnx", export_dir.parent / "c", "-o", paths[target], "--target", target,
                  "--calib-file", calib)  # fmt: skip
        assert ex.exit_code == 0, ex.output

    def census(path):
        model = onnx.load(path)
        meta = {p.key: p.value for p in model.metadata_props}
        ops = sorted(n.op_type for n in model.graph.node)
        return meta["qtoolkit.target"], ops

    target, ops = census(paths["openvino"])
    assert target == "openvino" and ops == census(export_dir / "model.onnx")[1]  # tensorrt layout
    assert census(paths["onnxruntime"])[1] != ops
    pytest.importorskip("openvino")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        f"name: t\noutput_dir: {tmp_path / 'run'}\ndata: {{calib_file: {calib}}}\n"
    )
    notes = {}
    for target, path in paths.items():
        built = _run("build-engine", path, "--runtime", "openvino", "-r", recipe_file,
                     "-o", tmp_path / f"ov-{target}")  # fmt: skip
        assert built.exit_code == 0, built.output
        notes[target] = "--target openvino" in built.output
    assert notes == {"openvino": False, "onnxruntime": True}
