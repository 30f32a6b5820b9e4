"""`qtool calibrate` and `qtool inspect` through Typer's CliRunner, and their error paths."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[0].startswith("error:"), result.output
    assert fragment in " ".join(lines), result.output


@pytest.mark.parametrize("method", ["max", "percentile", "mse", "entropy"])
def test_calibrate_writes_reloadable_checkpoint(tiny_dir, calib_jsonl, tmp_path, method):
    out = tmp_path / "calibrated"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("calib:\n  batch_size: 4\n  stride: 16\n")
    result = _run(
        "calibrate",
        "-r",
        recipe,
        "--model",
        tiny_dir,
        "--calib-file",
        calib_jsonl,
        "--method",
        method,
        "--num-samples",
        12,
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert f"({method}" in result.output and "12 samples" in result.output
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["calib"]["method"] == method and manifest["calib"]["batch_size"] == 4
    assert manifest["num_samples"] == 12
    records = json.loads((out / "amax.json").read_text())
    assert records and all(r["amax"] is not None for r in records if r["enabled"])

    shown = _run("inspect", out, "--pattern", "*_weight_quantizer")
    assert shown.exit_code == 0, shown.output
    assert "weight" in shown.output and "activation" not in shown.output


def test_set_overrides_reach_the_recipe(tiny_bert_dir, calib_jsonl, tmp_path):
    out = tmp_path / "o"
    result = _run(
        "calibrate",
        "--model",
        tiny_bert_dir,
        "--calib-file",
        calib_jsonl,
        "-o",
        out,
        "--set",
        "quant.attention_matmul=false",
        "--set",
        "calib.num_samples=8",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["quant"]["attention_matmul"] is False and manifest["num_samples"] == 8


def test_missing_model_directory(calib_jsonl, tmp_path):
    result = _run(
        "calibrate", "--model", tmp_path / "nope", "--calib-file", calib_jsonl, "-o", tmp_path / "o"
    )
    _assert_one_line_error(result, "model directory not found")
    assert not (tmp_path / "o").exists()


def test_unknown_recipe_key(tiny_bert_dir, calib_jsonl, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("calib:\n  num_sample: 10\n")
    result = _run("calibrate", "-r", recipe, "--model", tiny_bert_dir, "--calib-file", calib_jsonl)
    _assert_one_line_error(result, "unknown key 'calib.num_sample'")
    assert str(recipe) in result.output


def test_empty_calibration_file(tiny_bert_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = _run(
        "calibrate", "--model", tiny_bert_dir, "--calib-file", empty, "-o", tmp_path / "o"
    )
    _assert_one_line_error(result, "has no examples")
    assert not (tmp_path / "o").exists()


def test_unsupported_architecture(calib_jsonl, tmp_path):
    gpt = tmp_path / "gpt2"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    result = _run("calibrate", "--model", gpt, "--calib-file", calib_jsonl, "-o", tmp_path / "o")
    _assert_one_line_error(result, "unsupported architecture 'gpt2'")
    assert not (tmp_path / "o").exists()


def test_missing_weights_suggests_random_init(tiny_bert_dir, calib_jsonl, tmp_path):
    import shutil

    cfg_only = tmp_path / "cfg"
    cfg_only.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_bert_dir / name, cfg_only / name)
    result = _run(
        "calibrate", "--model", cfg_only, "--calib-file", calib_jsonl, "-o", tmp_path / "o"
    )
    _assert_one_line_error(result, "random_init")
    ok = _run(
        "calibrate",
        "--model",
        cfg_only,
        "--calib-file",
        calib_jsonl,
        "-o",
        tmp_path / "o",
        "--set",
        "model.random_init=true",
        "--num-samples",
        4,
    )
    assert ok.exit_code == 0, ok.output


def test_inspect_rejects_non_checkpoint(tmp_path):
    _assert_one_line_error(_run("inspect", tmp_path), "not a qtoolkit")


def test_bad_method_flag(tiny_bert_dir, calib_jsonl):
    result = _run(
        "calibrate", "--model", tiny_bert_dir, "--calib-file", calib_jsonl, "--method", "kl"
    )
    _assert_one_line_error(result, "calib.method")
