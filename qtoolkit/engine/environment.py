"""Is there TensorRT and an NVIDIA GPU here? One clear line when not.

The GPU is found through the CUDA driver (`libcuda`) with ctypes, so the check needs neither a
CUDA build of torch nor an import of TensorRT, and it never creates a CUDA context.
"""

from __future__ import annotations

import ctypes
import sys
from types import ModuleType

from qtoolkit.errors import QtoolError

__all__ = [
    "DOCKER_HINT",
    "cuda_device_names",
    "installed_tensorrt_version",
    "import_tensorrt",
    "require_tensorrt_and_gpu",
]

DOCKER_HINT = (
    "use the Docker image: docker build -t qtoolkit . && "
    "docker run --gpus all -v $PWD:/work -w /work qtoolkit build-engine ..."
)
_LIBCUDA = {"win32": ("nvcuda.dll",), "darwin": ()}.get(
    sys.platform, ("libcuda.so.1", "libcuda.so")
)


def cuda_device_names() -> list[str]:
    """Names of the CUDA GPUs the driver reports; [] without a driver or a device."""
    for name in _LIBCUDA:
        try:
            cuda = ctypes.CDLL(name)
        except OSError:
            continue
        if cuda.cuInit(0) != 0:
            return []
        count = ctypes.c_int(0)
        if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return []
        names = []
        for index in range(count.value):
            device = ctypes.c_int(0)
            buf = ctypes.create_string_buffer(256)
            if cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
                continue
            ok = cuda.cuDeviceGetName(buf, len(buf), device) == 0
            names.append(buf.value.decode(errors="replace") if ok else f"cuda:{index}")
        return names
    return []


def installed_tensorrt_version() -> str | None:
    """The installed TensorRT version without importing it (which would load its libraries);
    else that of a `tensorrt` module already imported."""
    from qtoolkit.version import installed_distribution

    found = installed_distribution("tensorrt")
    if found is not None:
        return found[1]
    module = sys.modules.get("tensorrt")
    return getattr(module, "__version__", None)


def import_tensorrt() -> ModuleType:
    """`import tensorrt`, or one line saying how to get it."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        raise QtoolError(_missing_trt_message(exc)) from None
    return tensorrt


def require_tensorrt_and_gpu() -> ModuleType:
    """The `tensorrt` module, when both it and a CUDA GPU are present; else one QtoolError."""
    try:
        trt = import_tensorrt()
        trt_error = None
    except QtoolError as exc:
        trt, trt_error = None, exc
    gpus = cuda_device_names()
    if trt_error is not None and not gpus:
        raise QtoolError(
            "building a TensorRT engine needs TensorRT and an NVIDIA GPU, and this machine has "
            f"neither; {DOCKER_HINT}"
        )
    if trt_error is not None:
        raise trt_error
    if not gpus:
        raise QtoolError(
            "no NVIDIA GPU is visible (the CUDA driver is missing or reports no device); "
            f"TensorRT builds engines on a GPU; {DOCKER_HINT}"
        )
    return trt


def _missing_trt_message(exc: BaseException) -> str:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"TensorRT is not installed or does not load ({detail}); install it with "
        f"pip install 'qtoolkit[trt]' on a machine with an NVIDIA GPU, or {DOCKER_HINT}"
    )
