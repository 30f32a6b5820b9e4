"""ONNX Runtime as a backend (CPU by default; CUDA/TensorRT providers when installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qtoolkit.errors import QtoolError

__all__ = ["OrtRunner", "ort_session"]


def ort_session(path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"ONNX model not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path), opts, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise QtoolError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None


class OrtRunner:
    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers=None):
        self.session = ort_session(path, threads, providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, batch) -> dict[str, np.ndarray]:
        feed = {}
        for name in self.input_names:
            if name not in batch:
                raise QtoolError(f"the ONNX model needs input '{name}', which the data lacks")
            value = batch[name]
            feed[name] = np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.int64)
        outputs = self.session.run(None, feed)
        return dict(zip(self.output_names, outputs, strict=True))
