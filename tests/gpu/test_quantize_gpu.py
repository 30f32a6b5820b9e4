"""`qtool quantize --runtime tensorrt` with a GPU: INT8 and FP16 engines built and timed side by
side, and the verdict in the report (skipped without CUDA and TensorRT, see conftest.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qtoolkit.cli import app


@pytest.mark.gpu
def test_quantize_tensorrt_builds_and_times_both_engines(tmp_path, tiny_bert_dir, calib_jsonl):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "quantize", str(tiny_bert_dir), "--calib-file", str(calib_jsonl),
            "--runtime", "tensorrt", "-o", str(out),
            "--set", "quantize.calibrators=[max]",
            "--set", "quantize.latency_shapes=[[1,16],[4,32]]",
            "--set", "export.num_samples=16",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    trt = report["tensorrt"]
    assert trt["built"] is True
    for name in ("int8", "fp16"):
        assert (out / trt["engines"][name]).stat().st_size > 0
    assert [(r["batch"], r["seq"]) for r in trt["latency"]] == [(1, 16), (4, 32)]
    for row in trt["latency"]:
        assert row["int8_ms"] > 0 and row["fp16_ms"] > 0
        assert row["speedup"]["low"] <= row["speedup"]["value"] <= row["speedup"]["high"]
    # Never shipped silently: the report says whether INT8 beat FP16.
    text = (out / "report.md").read_text()
    assert trt["verdict"] in text
    assert ("NOT faster" in trt["verdict"]) == (not trt["int8_worth_it"])
