"""Calibrated checkpoints reload on a CPU-only machine into the same model."""

from __future__ import annotations

import json

import pytest
import torch

from qtoolkit.errors import QtoolError
from qtoolkit.models import load_model
from qtoolkit.quant import (
    calibrate,
    insert_quantizers,
    iter_quantizers,
    load_quantized,
    save_quantized,
)
from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig


@pytest.mark.parametrize("task", ["sequence-classification", "masked-lm"])
def test_save_load_round_trip(tiny_dir, sample_batch, tmp_path, task):
    loaded = load_model(ModelConfig(path=str(tiny_dir), task=task))
    model = loaded.model
    # One residual quantizer left off (a skip pattern must match something in each model).
    skip = {
        "bert": "*.layer.0.attention.output.add_residual_input_quantizer",
        "squeezebert": "*.layers.0.post_attention.add_residual_input_quantizer",
    }[model.config.model_type]
    cfg = QuantConfig(skip=[skip])
    insert_quantizers(model, cfg)
    batch = dict(sample_batch)
    if model.config.model_type == "squeezebert":
        batch.pop("token_type_ids")
    calibrate(model, lambda m: m(**batch), CalibConfig(method="percentile", percentile=99.9))
    out = save_quantized(model, loaded.tokenizer, tmp_path / "ckpt", cfg, {"stage": "calibrated"})

    back = load_quantized(out)
    assert back.manifest["task"] == task
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, back.model(**batch).logits)
    original = dict(iter_quantizers(model))
    reloaded = dict(iter_quantizers(back.model))
    assert original.keys() == reloaded.keys()
    for name, q in original.items():
        assert q._disabled == reloaded[name]._disabled, name
        if hasattr(q, "_amax"):
            assert reloaded[name]._amax.device.type == "cpu"
            assert torch.equal(q._amax, reloaded[name]._amax), name
    records = json.loads((out / "amax.json").read_text())
    assert {r["name"] for r in records} == set(original)
    assert "| quantizer |" in (out / "amax.md").read_text()


def test_load_rejects_a_plain_directory(tmp_path):
    with pytest.raises(QtoolError, match="not a qtoolkit"):
        load_quantized(tmp_path)


def test_save_refuses_to_replace_a_foreign_directory(tiny_bert_dir, tmp_path):
    loaded = load_model(ModelConfig(path=str(tiny_bert_dir)))
    insert_quantizers(loaded.model, QuantConfig())
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(QtoolError, match="not written by qtool"):
        save_quantized(loaded.model, loaded.tokenizer, target, QuantConfig())
    assert (target / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temp dir left behind
