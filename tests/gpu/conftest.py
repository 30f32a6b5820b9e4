"""GPU tests: skipped, with the reason, unless torch sees CUDA and `import tensorrt` works.

Tests marked `gpu` anywhere are skipped that way; unmarked tests here (checks of the tiny model
on ONNX Runtime) run everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .tiny_qdq import VOCAB, write_tiny_qdq_onnx


def _gpu_skip_reason() -> str | None:
    try:
        import torch
    except Exception as exc:
        return f"needs torch ({exc})"
    if not torch.cuda.is_available():
        return f"needs a CUDA GPU (torch {torch.__version__}: torch.cuda.is_available() is False)"
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:
        return f"needs TensorRT (import tensorrt failed: {exc})"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def tiny_qdq_onnx(tmp_path) -> Path:
    return write_tiny_qdq_onnx(tmp_path / "tiny_qdq.onnx")


@pytest.fixture
def tiny_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, size=(2, 8)).astype(np.int64)
    mask = np.ones((2, 8), np.int64)
    mask[1, 5:] = 0  # a padded second sequence
    return {"input_ids": ids, "attention_mask": mask}
