"""ONNX Runtime as a runner: CPU by default; CUDA or TensorRT execution providers when given."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qtoolkit.errors import QtoolError
from qtoolkit.runtime.runner import named_feeds

__all__ = ["OrtRunner", "onnx_precision", "ort_session"]

_DEVICE = {"CPUExecutionProvider": "cpu"}


def ort_session(
    path: str | Path,
    threads: int | None = None,
    providers: list[Any] | None = None,
    optimized_path: Path | None = None,
) -> Any:
    """An ONNX Runtime session (all graph optimisations, quiet logging)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"ONNX model not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    # Idle intra-op threads would spin after each run and take the cores from whatever runs
    # next: in an interleaved benchmark that slowed the other backends, by up to 3.6x for
    # MiniLM on OpenVINO (scripts/bench_cpu.py, run with and without spinning).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(
            str(path), opts, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(f"ONNX Runtime cannot load {path}: {first}") from None


def onnx_precision(path: str | Path) -> str:
    """int8 (Q/DQ or integer ops), fp16 (half initializers) or fp32, read from the graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    if ops & {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul"}:
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer):
        return "fp16"
    return "fp32"


class OrtRunner:
    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        providers: list[Any] | None = None,
        precision: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.session = ort_session(path, threads, providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self._dtypes = {
            i.name: np.int32 if i.type == "tensor(int32)" else np.int64
            for i in self.session.get_inputs()
        }
        self.provider = self.session.get_providers()[0]
        self.device = _DEVICE.get(self.provider, "cuda")
        self._precision = precision

    @property
    def precision(self) -> str:
        if self._precision is None:  # read from the graph only when asked
            self._precision = onnx_precision(self.path)
        return self._precision

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, named_feeds(self.input_names, batch, self._dtypes))
        return dict(zip(self.output_names, outputs, strict=True))

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        feed = named_feeds(self.input_names, feeds, self._dtypes)
        return lambda: self.session.run(None, feed)

    def details(self) -> dict[str, Any]:
        return {"providers": self.session.get_providers()}
