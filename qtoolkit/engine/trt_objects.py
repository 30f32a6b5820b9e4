"""TensorRT objects whose creation can fail opaquely, each failure turned into one line.

- `trt.Builder(logger)` / `trt.Runtime(logger)` return nullptr when CUDA cannot be initialised
  (no usable device, a driver older than the CUDA TensorRT was built for, CUDA_VISIBLE_DEVICES
  hiding every GPU); pybind11 then raises `TypeError: ... factory function returned nullptr`.
- `ICudaEngine.create_execution_context()` returns None when it cannot allocate its device
  memory (most often: the GPU is out of memory).
Each message quotes the errors TensorRT logged during that call.
"""

from __future__ import annotations

from typing import Any

from qtoolkit.engine.environment import DOCKER_HINT
from qtoolkit.engine.logger import quote_errors
from qtoolkit.errors import QtoolError

__all__ = ["create_builder", "create_execution_context", "create_runtime"]

_CUDA_HINT = (
    "check that nvidia-smi sees the GPU, that the driver supports the CUDA version this TensorRT "
    f"was built for, and CUDA_VISIBLE_DEVICES; or {DOCKER_HINT}"
)


def _factory(trt: Any, logger: Any, name: str) -> Any:
    mark = logger.mark()
    try:
        obj = getattr(trt, name)(logger)
    except TypeError as exc:
        if "nullptr" not in str(exc):
            raise
        obj = None
    if obj is None:
        logged = quote_errors(logger.errors_since(mark), "no error was logged")
        raise QtoolError(
            f"TensorRT {getattr(trt, '__version__', '?')} could not initialise CUDA "
            f"(trt.{name} failed: {logged}); {_CUDA_HINT}"
        )
    return obj


def create_builder(trt: Any, logger: Any) -> Any:
    """`trt.Builder(logger)`, or one QtoolError when CUDA cannot be initialised."""
    return _factory(trt, logger, "Builder")


def create_runtime(trt: Any, logger: Any) -> Any:
    """`trt.Runtime(logger)`, or one QtoolError when CUDA cannot be initialised."""
    return _factory(trt, logger, "Runtime")


def create_execution_context(engine: Any, logger: Any, what: str) -> Any:
    """`engine.create_execution_context()`, or one QtoolError when TensorRT returns None."""
    mark = logger.mark()
    context = engine.create_execution_context()
    if context is None:
        logged = quote_errors(logger.errors_since(mark), "no error was logged")
        raise QtoolError(
            f"{what}: TensorRT could not create an execution context ({logged}); the GPU may be "
            "out of memory: free it (nvidia-smi shows who holds it) or rebuild with a smaller "
            "engine.max_shape"
        )
    return context
