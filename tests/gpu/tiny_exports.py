"""Tiny qtool QDQ exports of BERT and SqueezeBERT with all three inputs, fp32 or fp16.

The same path a user takes (insert quantizers, calibrate, `export_onnx`), on the tiny random
checkpoints of tests/conftest.py, so the GPU tests build engines from real qtool exports.
"""

from __future__ import annotations

from pathlib import Path

from qtoolkit.export import export_onnx
from qtoolkit.recipe import ExportConfig

from ..unit.test_export import _batch, _calibrated

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tiny_export(model_dir: Path, out: Path, fp16: bool):
    """Calibrate the tiny model (max) and export it; returns (ExportResult, sample batches)."""
    loaded, batches = _calibrated(model_dir, lengths=(12, 16))
    result = export_onnx(loaded.model, out, ExportConfig(fp16=fp16), batches)
    return result, batches


def feeds(rows: int = 4, length: int = 16, seed: int = 7) -> dict:
    """int64 numpy inputs, the three BERT inputs, right-padded rows."""
    return {k: v.numpy() for k, v in _batch(rows, length, seed).items()}
