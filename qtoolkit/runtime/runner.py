"""The one interface every runtime has: named inputs in, named numpy outputs out.

`evaluate`, export validation, `sensitivity`, `build-engine --runtime openvino` and `benchmark`
all hold a `Runner`: PyTorch (`TorchRunner`), ONNX Runtime on CPU, CUDA or the TensorRT EP
(`OrtRunner`), OpenVINO on CPU (`OpenVinoRunner`) and TensorRT engines (`TrtRunner`). A runner
says which runtime, device and precision it runs in; `precision` is what the runtime reports
it used (OpenVINO's read-back inference precision), not what was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qtoolkit.errors import QtoolError

__all__ = ["Runner", "RuntimeUnavailable", "describe", "named_feeds", "to_numpy"]


class RuntimeUnavailable(QtoolError):
    """The runtime cannot run here (package, GPU or execution provider missing)."""


@runtime_checkable
class Runner(Protocol):
    runtime: str  # torch | onnxruntime | openvino | tensorrt
    device: str  # cpu | cuda
    precision: str  # what it computes in: fp32, fp16, bf16, int8 (Q/DQ), fakequant
    input_names: Sequence[str]
    output_names: Sequence[str]

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """Bind one batch once; the returned call runs it (the benchmark's timed step)."""
        ...


def to_numpy(value: Any, dtype: Any = None) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (of `dtype` if given)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array if dtype is None or array.dtype == dtype else array.astype(dtype)


def named_feeds(
    names: Sequence[str], batch: Mapping[str, Any], dtypes: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The inputs `names` from `batch`, contiguous, in each input's dtype (int64 by default).
    A missing attention mask is all ones and missing token types all zeros (a tokenizer that
    leaves them out means exactly that); any other missing input is an error."""
    dtypes = dtypes or {}
    ids = batch.get("input_ids")
    feeds = {}
    for name in names:
        dtype = dtypes.get(name, np.int64)
        if name in batch:
            feeds[name] = np.ascontiguousarray(to_numpy(batch[name], dtype))
        elif name in ("attention_mask", "token_type_ids") and ids is not None:
            fill = np.ones_like if name == "attention_mask" else np.zeros_like
            feeds[name] = fill(to_numpy(ids, dtype))
        else:
            raise QtoolError(f"the model needs input '{name}', which the data lacks")
    return feeds


def describe(runner: Any) -> dict[str, Any]:
    """runtime / device / precision of a runner, plus what it adds (`details()`)."""
    info = {
        "runtime": getattr(runner, "runtime", "unknown"),
        "device": getattr(runner, "device", "unknown"),
        "precision": getattr(runner, "precision", "unknown"),
    }
    details = getattr(runner, "details", None)
    return {**info, **(details() if callable(details) else {})}
