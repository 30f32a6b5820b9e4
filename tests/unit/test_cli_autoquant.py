"""qtool autoquant and qtool calibrate with SmoothQuant + bias correction, on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from qtoolkit.cli import app

from ..conftest import SENTENCES

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled-aq")
    rows = [{"text": s, "label": int("good" in s or "love" in s)} for s in SENTENCES]
    for name, n in (("calib", 2), ("dev", 1), ("test", 2)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * n))
    return folder


def _recipe(tmp_path, model_dir, labelled, tools=True):
    path = tmp_path / f"r{int(tools)}.yaml"
    sq = "smoothquant: {alpha: [0.5, 0.8]}" if tools else ""
    path.write_text(
        f"""
output_dir: {tmp_path / "out"}
model: {{path: {model_dir}, task: sequence-classification}}
data:
  eval_file: {labelled / "dev.jsonl"}
  test_file: {labelled / "test.jsonl"}
  calib_file: {labelled / "calib.jsonl"}
  max_length: 32
quant:
  {sq}
  auto: {{methods: [max, percentile], metric: agreement}}
calib: {{num_samples: 16, batch_size: 8, stride: 32, bias_correction: {str(tools).lower()}}}
export: {{num_samples: 8}}
bench: {{threads: 1}}
"""
    )
    return path


def test_autoquant_end_to_end(tmp_path, tiny_dir, labelled):
    from qtoolkit.quant import load_quantized

    recipe = _recipe(tmp_path, tiny_dir, labelled)
    squeeze = "squeeze" in str(tiny_dir)
    latency = "--no-latency" if squeeze else "--latency"
    result = _run("autoquant", "-r", recipe, "--budget", "100", latency)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "autoquant_report" / "results.json").read_text())
    dev = report["dev"]
    # 2 alphas x 2 calibrators were scored on dev, and the best of them was kept.
    assert len(dev["candidates"]) == 4
    assert dev["chosen"]["score"] == max(c["score"] for c in dev["candidates"])
    assert dev["met"] and report["float_units"] == []
    assert report["gemms"]["int8"] == report["gemms"]["gemms"] > 0
    agree = report["test"]["agreement"]
    assert agree["low"] <= agree["value"] <= agree["high"]
    assert "delta_vs_fp32" in report["test"]
    if not squeeze:
        labels = [r["label"] for r in report["latency_ms"]]
        assert labels == ["fp32", "all INT8"]
    ckpt = load_quantized(tmp_path / "out" / "autoquant")
    buffers = {n.rpartition(".")[2] for n, _ in ckpt.model.named_buffers()}
    assert "smooth_input_scale" in buffers and "smooth_residual_scale" in buffers
    assert ckpt.manifest["autoquant"]["calibrator"] in ("max", "percentile")


def test_calibrate_with_smoothquant_and_bias_correction(tmp_path, tiny_bert_dir, labelled):
    from qtoolkit.quant import load_quantized

    plain_recipe = _recipe(tmp_path, tiny_bert_dir, labelled, tools=False)
    plain = _run("calibrate", "-r", plain_recipe, "-o", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    recipe = _recipe(tmp_path, tiny_bert_dir, labelled)
    smoothed = _run("calibrate", "-r", recipe, "-o", tmp_path / "sq")
    assert smoothed.exit_code == 0, smoothed.output
    a, b = load_quantized(tmp_path / "plain"), load_quantized(tmp_path / "sq")
    assert a.manifest["smoothquant_sites"] == 0 and not a.manifest["calib"]["bias_correction"]
    assert b.manifest["smoothquant_sites"] > 0 and b.manifest["calib"]["bias_correction"]
    biases = [n for n, _ in a.model.named_parameters() if n.endswith("dense.bias")]
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert any(not torch.equal(pa[n], pb[n]) for n in biases)


def test_autoquant_refuses_an_unknown_metric(tmp_path, tiny_bert_dir, labelled):
    recipe = _recipe(tmp_path, tiny_bert_dir, labelled)
    result = _run("autoquant", "-r", recipe, "--metric", "bleu", "--no-latency")
    assert result.exit_code != 0 and "quant.auto.metric" in result.output
