"""`qtool quantize` on tiny models: presets as data, the held-out choice, the output folder,
and one clear line on bad input with the inputs left as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app
from tests.conftest import tree_digest

# Small candidate sets keep each run to seconds; the machinery is the same as the presets'.
FAST = [
    "--set",
    "quantize.calibrators=[max,entropy]",
    "--set",
    "quantize.latency=false",
    "--set",
    "export.num_samples=16",
]


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    from tests.conftest import SENTENCES

    path = tmp_path_factory.mktemp("labelled") / "test.jsonl"
    rows = [{"text": s, "label": i % 2} for i, s in enumerate(SENTENCES * 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- presets are data ----------------------------------------------------------------------


def test_every_preset_is_a_valid_partial_recipe():
    from qtoolkit.pipeline.quantize import quantize_recipe
    from qtoolkit.quant.presets import PRESETS

    for name, preset in PRESETS.items():
        recipe = quantize_recipe(None, runtime=name)
        assert recipe.quantize.runtime == name
        assert recipe.export.target == preset.recipe["export"]["target"]
        assert recipe.quant.residual_add == preset.recipe["quant"]["residual_add"]
        assert recipe.quantize.calibrators == preset.recipe["quantize"]["calibrators"]
        assert preset.why, f"{name}: a preset says why it is what it is"
    # TensorRT: every GEMM input, attention matmul and residual add quantized.
    trt = quantize_recipe(None, runtime="tensorrt")
    assert trt.quant.residual_add and trt.quant.attention_matmul and trt.quant.linear
    assert trt.export.target == "tensorrt"


def test_a_new_runtime_preset_is_one_entry(monkeypatch):
    from qtoolkit.pipeline.quantize import quantize_recipe
    from qtoolkit.quant import presets

    entry = presets.Preset(
        runtime="myruntime",
        summary="a test runtime",
        recipe={
            "quant": {"residual_add": True, "smoothquant": None},
            "export": {"target": "tensorrt"},
            "quantize": {"calibrators": ["percentile"]},
        },
        check_runtime="onnxruntime",
        why=("because",),
    )
    monkeypatch.setitem(presets.PRESETS, "myruntime", entry)
    recipe = quantize_recipe(None, runtime="myruntime")
    assert recipe.quantize.runtime == "myruntime"
    assert recipe.quantize.calibrators == ["percentile"]
    assert recipe.quant.smoothquant is None
    result = _run("quantize", "--show-preset", "myruntime")
    assert result.exit_code == 0, result.output
    assert "a test runtime" in result.output and "percentile" in result.output


def test_recipe_and_set_override_the_preset(tmp_path):
    from qtoolkit.pipeline.quantize import quantize_recipe

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("quant:\n  residual_add: true\nquantize:\n  runtime: openvino\n")
    recipe = quantize_recipe(recipe_file, ["quantize.calibrators=[max]"])
    assert recipe.quantize.runtime == "openvino"  # from the file: the openvino preset
    assert recipe.export.target == "openvino"
    assert recipe.quant.residual_add is True  # the file's key beats the preset's
    assert recipe.quantize.calibrators == ["max"]  # --set beats both
    assert recipe.quant.smoothquant is not None  # the rest of the preset stays


def test_show_preset_prints_the_yaml_and_its_reasons():
    import yaml

    result = _run("quantize", "--show-preset", "onnxruntime")
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(result.output)
    assert body["quant"]["residual_add"] is False
    assert body["export"]["target"] == "onnxruntime"
    assert result.output.count("# - ") >= 2  # the reasons


# --- the held-out split and the label-free score -------------------------------------------


def test_candidates_are_never_scored_on_the_sentences_that_set_their_ranges(tiny_bert_dir):
    from transformers import AutoTokenizer

    from qtoolkit.pipeline.holdout import split_calibration
    from qtoolkit.recipe import DataConfig

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    path = tiny_bert_dir.parent / "numbered.jsonl"
    lines = [json.dumps({"text": f"sentence {i} " + "good " * (i % 5)}) for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    split = split_calibration("sequence-classification", tok, path, DataConfig(), 64, 24, 8)
    assert (split.num_range, split.num_holdout) == (64, 24)

    def texts(batches):
        return {
            tok.decode(ids, skip_special_tokens=True) for b in batches for ids in b["input_ids"]
        }

    assert not texts(split.range_batches) & texts(split.holdout_batches)
    short = split_calibration("sequence-classification", tok, path, DataConfig(), 512, 128, 8)
    # A quarter of a short file, in whole batches (the last one is partial), the rest for ranges.
    assert 25 <= short.num_holdout < 25 + 8
    assert short.num_range + short.num_holdout == 100


def test_output_kl_and_decisions():
    import numpy as np

    from qtoolkit.tasks.evaluation import output_decisions, output_kl

    ref = [{"logits": np.array([[2.0, 0.0], [0.0, 1.0]])}]
    assert output_kl(ref, ref) == pytest.approx(0.0, abs=1e-12)
    moved = [{"logits": np.array([[1.0, 0.0], [0.0, 1.0]])}]
    p = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    q = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
    expected = float((p * np.log(p / q)).sum()) / 2  # one row of two moved
    assert output_kl(moved, ref) == pytest.approx(expected)
    assert output_decisions(moved) == [0, 1]


# --- end to end ----------------------------------------------------------------------------


def _check_folder(out: Path, runtime: str) -> dict:
    from qtoolkit.artifacts import Kind, kind_of

    assert kind_of(out) is Kind.ONNX
    for name in ("model.onnx", "model.fp32.onnx", "config.json", "report.md", "report.json"):
        assert (out / name).is_file(), name
    assert (out / "report.png").stat().st_size > 1000
    assert kind_of(out / "checkpoint") is Kind.QUANTIZED
    report = json.loads((out / "report.json").read_text())
    assert report["runtime"] == runtime
    return report


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tensorrt"])
def test_quantize_bert_for_each_runtime(tmp_path, tiny_bert_dir, calib_jsonl, labelled, runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    before = {p: tree_digest(p) for p in (tiny_bert_dir, calib_jsonl, labelled)}
    out = tmp_path / "out"
    result = _run(
        "quantize",
        str(tiny_bert_dir),
        "--calib-file",
        str(calib_jsonl),
        "--runtime",
        runtime,
        "--test-file",
        str(labelled),
        "-o",
        str(out),
        *FAST,
    )
    assert result.exit_code == 0, result.output
    report = _check_folder(out, runtime)
    # Every SmoothQuant alpha of the preset x every calibrator, and the lowest held-out KL wins.
    alphas = report["recipe"]["quant"]["smoothquant"]["alpha"]
    assert len(report["candidates"]) == len(alphas) * 2
    best = min(report["candidates"], key=lambda c: c["kl"])
    assert report["chosen"]["label"] == best["label"]
    fidelity = report["check"]["fidelity"]
    assert fidelity["examples"] == 24 and 0.0 <= fidelity["agreement"]["value"] <= 1.0
    assert "accuracy_difference" in fidelity
    assert report["check"]["runtime"] == {"tensorrt": "onnxruntime"}.get(runtime, runtime)
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["runtime"] == runtime
    if runtime == "tensorrt":
        script = (out / "trtexec.sh").read_text()
        assert "trtexec" in script and str(out / "model.onnx") in script
        assert "not built" in (out / "report.md").read_text()
    assert {p: tree_digest(p) for p in before} == before
    # The folder is what evaluate takes as it is.
    evaluated = _run("evaluate", str(out), "--data", str(labelled))
    assert evaluated.exit_code == 0, evaluated.output


def test_quantize_squeezebert_with_latency_and_eval_file(
    tmp_path, tiny_squeezebert_dir, calib_jsonl, labelled
):
    out = tmp_path / "out"
    result = _run(
        "quantize",
        str(tiny_squeezebert_dir),
        "--calib-file",
        str(calib_jsonl),
        "--eval-file",
        str(labelled),
        "-o",
        str(out),
        "--set",
        "quantize.calibrators=[entropy]",
        "--set",
        "quantize.latency_shapes=[[1,16]]",
        "--set",
        "quantize.latency_iterations=2",
        "--set",
        "export.num_samples=16",
    )
    assert result.exit_code == 0, result.output
    report = _check_folder(out, "onnxruntime")
    assert all("dev_metric" in c for c in report["candidates"])  # chosen by the eval metric
    latency = report["check"]["latency"][0]
    assert (latency["batch"], latency["seq"]) == (1, 16)
    assert latency["fp32_ms"] > 0 and latency["int8_ms"] > 0
    assert "speedup_vs_fp32" in latency


def test_quantize_from_python(tmp_path, tiny_bert_dir, calib_jsonl):
    import qtoolkit

    outcome = qtoolkit.quantize(
        tiny_bert_dir,
        calib_jsonl,
        runtime="onnxruntime",
        output=tmp_path / "py out",
        overrides=["quantize.calibrators=[max]", "quantize.latency=false"],
    )
    assert outcome.output_dir == tmp_path / "py out"
    assert (outcome.output_dir / "model.onnx").is_file()
    assert outcome.chosen["method"] == "max"


def test_budget_puts_gemms_back_in_float_only_when_asked(tmp_path, tiny_bert_dir, calib_jsonl):
    out = tmp_path / "out"
    result = _run(
        "quantize",
        str(tiny_bert_dir),
        "--calib-file",
        str(calib_jsonl),
        "-o",
        str(out),
        "--budget",
        "0",
        "--set",
        "quant.smoothquant=null",
        "--set",
        "quantize.max_fallback=2",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    fallback = report["fallback"]
    assert fallback["budget_points"] == 0 and fallback["target"] == 1.0
    units = fallback["float_units"]
    assert len(units) <= 2
    # Units go to float only when the all-INT8 start misses the target.
    assert bool(units) == (fallback["start"] < fallback["target"])
    before, after = report["gemms_before_fallback"], report["gemms"]
    assert after["float"] == before["float"] + len(units)
    assert report["check"]["fidelity"]["agreement"]["value"] >= 0.0


def test_without_budget_every_gemm_stays_int8(tmp_path, tiny_bert_dir, calib_jsonl):
    out = tmp_path / "out"
    result = _run(
        "quantize", str(tiny_bert_dir), "--calib-file", str(calib_jsonl), "-o", str(out), *FAST
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["fallback"] is None
    assert report["gemms"]["float"] == 0 and report["gemms"]["int8"] == report["gemms"]["gemms"]


# --- bad input: one line, inputs intact, nothing written -----------------------------------


def _refused(result, out: Path, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    errors = _error_lines(result)
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_refuses_an_empty_calibration_file(tmp_path, tiny_bert_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    result = _run("quantize", str(tiny_bert_dir), "--calib-file", str(empty), "-o", str(out))
    _refused(result, out, str(empty))


def test_refuses_a_calibration_file_too_short_to_hold_out(tmp_path, tiny_bert_dir):
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps({"text": f"s {i}"}) + "\n" for i in range(10)))
    out = tmp_path / "out"
    result = _run("quantize", str(tiny_bert_dir), "--calib-file", str(short), "-o", str(out))
    _refused(result, out, "10 examples", "at least")


def test_refuses_an_unlabelled_eval_file(tmp_path, tiny_bert_dir, calib_jsonl):
    out = tmp_path / "out"
    result = _run(
        "quantize",
        str(tiny_bert_dir),
        "--calib-file",
        str(calib_jsonl),
        "--eval-file",
        str(calib_jsonl),
        "-o",
        str(out),
    )
    _refused(result, out, "--eval-file", "labels")


def test_refuses_an_unknown_runtime(tmp_path, tiny_bert_dir, calib_jsonl):
    out = tmp_path / "out"
    result = _run(
        "quantize", str(tiny_bert_dir), "--calib-file", str(calib_jsonl), "--runtime", "tflite",
        "-o", str(out),
    )  # fmt: skip
    _refused(result, out, "tflite", "onnxruntime, openvino, tensorrt")


def test_refuses_an_output_that_is_an_input(tmp_path, tiny_bert_dir, calib_jsonl):
    before = tree_digest(tiny_bert_dir)
    result = _run(
        "quantize", str(tiny_bert_dir), "--calib-file", str(calib_jsonl), "-o", str(tiny_bert_dir)
    )
    assert result.exit_code == 2 and len(_error_lines(result)) == 1, result.output
    assert "input" in _error_lines(result)[0]
    assert tree_digest(tiny_bert_dir) == before


def test_refuses_a_model_without_a_trained_head(tmp_path, calib_jsonl):
    from transformers import BertModel

    from tests.conftest import _save_checkpoint, bert_config

    bare = _save_checkpoint(tmp_path / "bare", bert_config(), BertModel)
    out = tmp_path / "out"
    result = _run("quantize", str(bare), "--calib-file", str(calib_jsonl), "-o", str(out))
    _refused(result, out, "no trained", "head")


def test_tensorrt_engine_profile_covers_every_timed_shape():
    from qtoolkit.pipeline.quantize import quantize_recipe
    from qtoolkit.pipeline.quantize_trt import engine_config_for

    recipe = quantize_recipe(None, ["quantize.latency_shapes=[[1,8],[64,256]]"], "tensorrt")
    cfg = engine_config_for(recipe)
    assert cfg.min_shape == (1, 8) and cfg.max_shape == (64, 256)
    for axis in (0, 1):
        assert cfg.min_shape[axis] <= cfg.opt_shape[axis] <= cfg.max_shape[axis]


def test_a_kept_candidate_is_the_one_a_fresh_build_gives(tiny_bert_dir, calib_jsonl):
    import copy

    import torch

    from qtoolkit.models import load_model
    from qtoolkit.pipeline.common import batch_forward_loop
    from qtoolkit.quant import insert_quantizers
    from qtoolkit.quant.candidates import Candidate, build_candidate, score_candidates
    from qtoolkit.recipe import CalibConfig, DataConfig, ModelConfig, QuantConfig
    from qtoolkit.tasks.inputs import model_input_batches

    loaded = load_model(ModelConfig(path=str(tiny_bert_dir)))
    batches, _ = model_input_batches(
        "sequence-classification", loaded.tokenizer, calib_jsonl, DataConfig(), 32, 8
    )
    loop = batch_forward_loop(batches, "cpu")
    model = loaded.model.eval()
    insert_quantizers(model, QuantConfig(residual_add=False))
    fresh = copy.deepcopy(model)
    sites = ["qkv", "attn_out", "ffn_out"]
    scored = score_candidates(
        model, loop, CalibConfig(), [0.5, 0.8], ["max", "entropy"], sites, True,
        lambda m, c: {}, keep=True,
    )  # fmt: skip
    wanted = Candidate("max", 0.5, True)
    assert wanted in [c for c, _ in scored] and len(scored) == 4
    kept, shifts = scored.take(wanted)
    built_shifts = build_candidate(fresh, loop, CalibConfig(), sites, wanted)
    assert set(shifts.deltas) == set(built_shifts.deltas)
    with torch.no_grad():
        for batch in batches:
            torch.testing.assert_close(kept(**batch).logits, fresh(**batch).logits)


@pytest.mark.parametrize(
    "task",
    [
        "token-classification",
        "question-answering",
        "multiple-choice",
        "masked-lm",
        "next-sentence-prediction",
    ],
)
def test_quantize_every_head_takes_the_task_from_the_checkpoint(task, tiny_bert_dir, tmp_path):
    from qtoolkit.models import load_model
    from qtoolkit.recipe import ModelConfig
    from tests.conftest import SENTENCES

    from .test_heads import CHOICES

    overrides = {"initializer_range": 0.2}
    labels = 5 if task == "token-classification" else 2
    loaded = load_model(
        ModelConfig(
            path=str(tiny_bert_dir),
            task=task,
            num_labels=labels,
            random_init=True,
            config_overrides=overrides,
        )
    )
    trained = tmp_path / "trained"  # a checkpoint whose head is its own (not freshly made)
    loaded.model.save_pretrained(trained)
    loaded.tokenizer.save_pretrained(trained)
    calib = tmp_path / "calib.jsonl"
    rows = CHOICES * 11 if task == "multiple-choice" else [{"text": s} for s in SENTENCES * 4]
    calib.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    result = _run(
        "quantize", str(trained), "--calib-file", str(calib), "-o", str(out),
        "--set", "quantize.calibrators=[max]", "--set", "quant.smoothquant=null",
        "--set", "calib.bias_correction=false", "--set", "quantize.latency=false",
        "--set", "export.num_samples=8", "--set", "data.max_length=48",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = _check_folder(out, "onnxruntime")
    assert report["recipe"]["model"]["task"] == task
    assert report["recipe"]["model"]["num_labels"] == labels or task not in (
        "token-classification",
    )
    assert report["check"]["fidelity"]["examples"] > 0
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["task"] == task
