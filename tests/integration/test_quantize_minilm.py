"""`qtool quantize` end to end on the real MiniLM: the session's fine-tuned `sentiment_minilm`,
the rt-sentiment calibration sentences (their labels unused), the ONNX Runtime preset, and the
report's check on the first 400 test sentences."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app
from tests.conftest import tree_digest

pytestmark = pytest.mark.integration


def test_quantize_minilm_for_onnxruntime(tmp_path, rt_data, sentiment_minilm):
    model = sentiment_minilm.run / "finetuned"
    calib = rt_data / "calib.jsonl"
    inputs = (model, calib, sentiment_minilm.test)
    before = {p: tree_digest(p) for p in inputs}
    out = tmp_path / "int8"
    result = CliRunner().invoke(
        app,
        [
            "quantize",
            str(model),
            "--calib-file",
            str(calib),
            "--runtime",
            "onnxruntime",
            "--test-file",
            str(sentiment_minilm.test),
            "-o",
            str(out),
            # The preset's search as a user gets it, on fewer sentences to fit the suite.
            "--set",
            "calib.num_samples=256",
            "--set",
            "quantize.latency=false",
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p: tree_digest(p) for p in inputs} == before
    report = json.loads((out / "report.json").read_text())
    assert report["runtime"] == "onnxruntime"
    # The preset's search: every SmoothQuant alpha x calibrator, the lowest held-out KL chosen,
    # scored on sentences that did not set the ranges.
    preset = report["recipe"]["quantize"]["calibrators"]
    alphas = report["recipe"]["quant"]["smoothquant"]["alpha"]
    assert len(report["candidates"]) == len(alphas) * len(preset) >= 4
    assert report["chosen"]["label"] == min(report["candidates"], key=lambda c: c["kl"])["label"]
    # Every GEMM stays INT8 by default (no --budget), and the residual adds stay float.
    # MiniLM: 6 layers x (6 Linear + 2 attention matmuls), the pooler and the classifier.
    assert report["gemms"]["int8"] == report["gemms"]["gemms"] == 50
    assert report["recipe"]["quant"]["residual_add"] is False
    # On ONNX Runtime, the INT8 model makes fp32's decision on nearly every test sentence
    # (measured 98-99.5% on these 400; the old default placement gave ~96%).
    fidelity = report["check"]["fidelity"]
    assert fidelity["examples"] == 400
    assert fidelity["agreement"]["value"] >= 0.97, fidelity
    assert abs(fidelity["accuracy_difference"]["value"]) <= 0.03, fidelity
    # The folder is what `qtool evaluate` takes as it is, on ONNX Runtime.
    evaluated = CliRunner().invoke(
        app, ["evaluate", str(out), "--data", str(sentiment_minilm.test), "--limit", "64"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "accuracy" in evaluated.output
