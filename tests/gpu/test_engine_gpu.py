"""Build a real TensorRT engine from a tiny QDQ ONNX, compare with ONNX Runtime, time it.

The `gpu` tests need CUDA and TensorRT (tests/gpu/conftest.py skips them otherwise). The first
test needs neither: it checks on ONNX Runtime (CPU) that the tiny model computes what it should,
so a GPU failure can be blamed on TensorRT and not on the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qtoolkit.engine import EngineRunner, build_engine, read_onnx
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

from .tiny_qdq import OUT, tiny_qdq_reference, tiny_qdq_weights

CONFIG = EngineConfig(min_shape=(1, 4), opt_shape=(2, 8), max_shape=(4, 16), workspace_mib=256)


def _ort_logits(onnx_path, feeds) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], feeds)[0]


def test_tiny_qdq_model_on_onnxruntime(tiny_qdq_onnx, tiny_feeds):
    summary = read_onnx(tiny_qdq_onnx)
    assert [i.name for i in summary.inputs] == ["input_ids", "attention_mask"]
    assert (summary.num_quantize, summary.num_dequantize) == (1, 2)
    logits = _ort_logits(tiny_qdq_onnx, tiny_feeds)
    assert logits.shape == (2, 8, OUT)
    expected = tiny_qdq_reference(tiny_qdq_weights(), **tiny_feeds)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert np.all(logits[1, 5:] == 0)  # masked positions


@pytest.mark.gpu
def test_engine_matches_onnxruntime_and_times(tiny_qdq_onnx, tiny_feeds, tmp_path):
    engine_path = tmp_path / "tiny.engine"
    build = build_engine(tiny_qdq_onnx, engine_path, CONFIG)

    assert engine_path.stat().st_size > 0
    report = json.loads(build.report_path.read_text())
    assert report["tensorrt_version"]
    assert report["gpu"]
    assert [p["input"] for p in report["profiles"]] == ["input_ids", "attention_mask"]
    assert report["profiles"][0]["max"] == [4, 16]
    assert (tmp_path / "timing.cache").stat().st_size > 0
    assert "trtexec" in build.trtexec_script.read_text()
    # The engine inspector must work on the supported versions: a failure is a failure.
    assert "error" not in report["layers"], report["layers"]
    assert report["layers"]["count"] > 0

    runner = EngineRunner(engine_path)
    assert runner.input_names == ["input_ids", "attention_mask"]
    timed = runner.benchmark(tiny_feeds, warmup=3, iterations=20)
    logits = timed.outputs["logits"].astype(np.float32)
    reference = _ort_logits(tiny_qdq_onnx, tiny_feeds)
    # INT8 GEMM on both sides; TensorRT 10 may run the rest in fp16.
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(logits, reference, rtol=1e-2, atol=1e-2 * scale)
    assert len(timed.latencies_ms) == 20
    assert all(ms > 0 for ms in timed.latencies_ms)
    assert timed.median_ms < 100

    # Other shapes inside the profile run; outside it, one clear error.
    small = {k: v[:1, :4] for k, v in tiny_feeds.items()}
    np.testing.assert_allclose(
        runner.run(small)["logits"], _ort_logits(tiny_qdq_onnx, small), rtol=1e-2, atol=1e-2 * scale
    )
    too_long = {k: np.concatenate([v] * 3, axis=1) for k, v in tiny_feeds.items()}
    with pytest.raises(QtoolError, match="outside the engine's profile"):
        runner.run(too_long)


@pytest.mark.gpu
def test_second_build_reuses_timing_cache(tiny_qdq_onnx, tmp_path):
    build_engine(tiny_qdq_onnx, tmp_path / "a.engine", CONFIG)
    second = build_engine(tiny_qdq_onnx, tmp_path / "b.engine", CONFIG)
    cache = second.report.timing_cache
    assert cache["loaded_bytes"] > 0
    assert not cache["refused"]
