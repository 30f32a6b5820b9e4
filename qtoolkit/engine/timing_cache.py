"""A TensorRT timing cache shared by builds: loaded if the file exists, saved atomically after.

The cache holds measured tactic timings; it is only valid for the TensorRT version and GPU that
wrote it. A cache TensorRT refuses (another version or device) is replaced by a fresh one rather
than failing the build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.fsutil import atomic_file

__all__ = ["TimingCacheState", "attach_timing_cache", "save_timing_cache"]


@dataclass
class TimingCacheState:
    path: Path
    loaded_bytes: int = 0  # 0: started empty
    refused: bool = False  # the file existed but TensorRT would not use it
    saved_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "loaded_bytes": self.loaded_bytes,
            "refused": self.refused,
            "saved_bytes": self.saved_bytes,
        }


def attach_timing_cache(builder_config: Any, path: str | Path) -> TimingCacheState:
    """Create the config's timing cache from `path` (if it exists) and set it on the config."""
    state = TimingCacheState(Path(path))
    data = state.path.read_bytes() if state.path.is_file() else b""
    cache = builder_config.create_timing_cache(data) if data else None
    if cache is not None and builder_config.set_timing_cache(cache, ignore_mismatch=False):
        state.loaded_bytes = len(data)
        return state
    state.refused = bool(data)
    builder_config.set_timing_cache(builder_config.create_timing_cache(b""), ignore_mismatch=False)
    return state


def save_timing_cache(builder_config: Any, state: TimingCacheState) -> TimingCacheState:
    """Write the config's (updated) timing cache to `state.path`, atomically."""
    cache = builder_config.get_timing_cache()
    if cache is None:
        return state
    data = memoryview(cache.serialize()).tobytes()
    with atomic_file(state.path) as tmp:
        tmp.write_bytes(data)
    state.saved_bytes = len(data)
    return state
