"""Runtimes behind one `Runner` interface (named inputs in, named numpy outputs out; runtime,
device, precision): PyTorch, ONNX Runtime, OpenVINO, TensorRT; the backend registry and
`open_target`. Attributes load on first use, so `runtime.backends` stays light to import."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BACKENDS",
    "OpenVinoRunner",
    "OrtRunner",
    "Runner",
    "RuntimeOptions",
    "Target",
    "TorchRunner",
    "TrtRunner",
    "get_backend",
    "open_target",
]

_WHERE = {
    "BACKENDS": "backends",
    "get_backend": "backends",
    "OrtRunner": "ort_runner",
    "TorchRunner": "torch_runner",
    "OpenVinoRunner": "ov_runner",
    "TrtRunner": "trt_runner",
    "Runner": "runner",
    "RuntimeOptions": "targets",
    "Target": "targets",
    "open_target": "targets",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
