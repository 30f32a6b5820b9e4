"""The machine a figure was measured on: every results file names it."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_flags", "machine_info"]

_FLAGS_OF_INTEREST = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx2")


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> list[str]:
    """The instruction-set flags that decide INT8/bf16 speed, as the kernel reports them."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in _FLAGS_OF_INTEREST if f in flags]


def _version(name: str) -> str | None:
    from qtoolkit.version import installed_distribution

    found = installed_distribution(name)
    return found[1] if found else None


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """CPU model, cores, relevant flags, package versions and the date, for a results file."""
    info = _cpuinfo()
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("torch", "onnxruntime", "openvino", "transformers", "onnx", "qtoolkit")
        },
    }
