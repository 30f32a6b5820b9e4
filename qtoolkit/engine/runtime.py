"""Run a serialized engine on numpy inputs and time it with CUDA events.

Device buffers, the stream and the events come from torch.cuda (torch is a dependency already),
so no pycuda/cuda-python is needed. One execution context, profile 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qtoolkit.engine.environment import DOCKER_HINT, import_tensorrt
from qtoolkit.engine.logger import make_logger, quote_errors
from qtoolkit.engine.trt_objects import create_execution_context, create_runtime
from qtoolkit.errors import QtoolError

__all__ = ["EngineRunner", "TimedRun", "torch_dtype_for"]

# TensorRT DataType member name -> torch dtype attribute name.
_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


@dataclass
class TimedRun:
    outputs: dict[str, np.ndarray]
    latencies_ms: list[float]  # one per timed iteration, GPU time between CUDA events

    @property
    def median_ms(self) -> float:
        return float(np.median(self.latencies_ms))


def torch_dtype_for(trt_dtype: Any) -> Any:
    """The torch dtype for a TensorRT DataType (by member name, so it works across versions)."""
    import torch

    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in _DTYPES:
        raise QtoolError(f"engine tensor type {name} is not supported by the qtoolkit runtime")
    return getattr(torch, _DTYPES[name])


class EngineRunner:
    """`EngineRunner(path).run({"input_ids": ids, ...})` -> {output name: array}."""

    def __init__(self, engine_path: str | Path) -> None:
        self._trt = import_tensorrt()
        torch = _cuda_torch()
        path = Path(engine_path)
        if not path.is_file():
            raise QtoolError(f"engine not found: {path}")
        self._logger = make_logger(self._trt)
        self._runtime = create_runtime(self._trt, self._logger)
        mark = self._logger.mark()
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            logged = quote_errors(self._logger.errors_since(mark), "no error was logged")
            raise QtoolError(
                f"{path}: TensorRT {self._trt.__version__} could not load this engine ({logged}); "
                "was it built by another TensorRT version or for another GPU? rebuild it here"
            )
        self.context = create_execution_context(self.engine, self._logger, str(path))
        mode_input = self._trt.TensorIOMode.INPUT
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode_input]
        self.output_names = [n for n in names if n not in self.input_names]
        self.stream = torch.cuda.Stream()
        self._device_inputs: dict[str, Any] = {}
        self._device_outputs: dict[str, Any] = {}

    def profile_shapes(self, name: str) -> list[tuple[int, ...]]:
        """(min, opt, max) shapes of input `name` in profile 0."""
        return [tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0)]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference; outputs copied back to host memory."""
        return self.benchmark(feeds, warmup=0, iterations=1).outputs

    def benchmark(
        self, feeds: Mapping[str, np.ndarray], warmup: int = 10, iterations: int = 50
    ) -> TimedRun:
        """Run `warmup` untimed then `iterations` timed inferences on the same inputs."""
        import torch

        if iterations < 1:
            raise QtoolError("iterations must be >= 1")
        self._bind(feeds)
        handle = self.stream.cuda_stream
        for _ in range(warmup):
            self._execute(handle)
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(iterations)
        ]
        for start, end in events:
            start.record(self.stream)
            self._execute(handle)
            end.record(self.stream)
        self.stream.synchronize()
        latencies = [start.elapsed_time(end) for start, end in events]
        outputs = {n: t.cpu().numpy() for n, t in self._device_outputs.items()}
        return TimedRun(outputs=outputs, latencies_ms=latencies)

    def _bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        import torch

        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise QtoolError(
                f"engine inputs are {self.input_names}; missing {missing}, unknown {unknown}"
            )
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                array = np.ascontiguousarray(feeds[name])
                dtype = torch_dtype_for(self.engine.get_tensor_dtype(name))
                tensor = torch.from_numpy(array).to("cuda", dtype=dtype, non_blocking=False)
                if not self.context.set_input_shape(name, tuple(array.shape)):
                    lo, _, hi = self.profile_shapes(name)
                    raise QtoolError(
                        f"input '{name}' shape {tuple(array.shape)} is outside the engine's "
                        f"profile {lo}..{hi}; rebuild with a wider engine.min/max_shape"
                    )
                self._device_inputs[name] = tensor
                self.context.set_tensor_address(name, tensor.data_ptr())
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise QtoolError(f"output '{name}' has a data-dependent shape {shape}")
                dtype = torch_dtype_for(self.engine.get_tensor_dtype(name))
                tensor = torch.empty(shape, dtype=dtype, device="cuda")
                self._device_outputs[name] = tensor
                self.context.set_tensor_address(name, tensor.data_ptr())
        self.stream.synchronize()

    def _execute(self, stream_handle: int) -> None:
        mark = self._logger.mark()
        if not self.context.execute_async_v3(stream_handle):
            logged = quote_errors(self._logger.errors_since(mark), "no error was logged")
            raise QtoolError(f"TensorRT execution failed: {logged}")


def _cuda_torch() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise QtoolError(
            "running a TensorRT engine needs an NVIDIA GPU and a CUDA build of torch "
            f"(torch {torch.__version__} sees no CUDA device); {DOCKER_HINT}"
        )
    return torch
