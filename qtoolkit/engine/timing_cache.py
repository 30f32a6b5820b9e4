"""A TensorRT timing cache shared by builds: loaded if the file exists, merged and saved after.

The cache holds measured tactic timings; it is only valid for the TensorRT version and GPU that
wrote it. A cache TensorRT refuses (another version or device) is replaced by a fresh one rather
than failing the build.

Two builds sharing one cache file (two `qtool build-engine` runs, or a build next to trtexec)
must not lose each other's timings: saving takes an exclusive lock on `<cache>.lock` (fcntl),
reads the file as it is now, `combine`s it into this build's cache and writes the union
atomically. Without fcntl (Windows) the merge still happens, unlocked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.fsutil import atomic_file

__all__ = ["TimingCacheState", "attach_timing_cache", "cache_lock", "save_timing_cache"]


@dataclass
class TimingCacheState:
    path: Path
    loaded_bytes: int = 0  # 0: started empty
    refused: bool = False  # the file existed but TensorRT would not use it
    saved_bytes: int = 0
    merged_bytes: int = 0  # bytes of a cache another build wrote meanwhile, combined into ours
    loaded_data: bytes = b""  # what was loaded (to tell whether the file changed since)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "loaded_bytes": self.loaded_bytes,
            "refused": self.refused,
            "saved_bytes": self.saved_bytes,
            "merged_bytes": self.merged_bytes,
        }


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `<path>.lock` for the block (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def attach_timing_cache(builder_config: Any, path: str | Path) -> TimingCacheState:
    """Create the config's timing cache from `path` (if it exists) and set it on the config."""
    state = TimingCacheState(Path(path))
    with cache_lock(state.path):  # never read a half-written file from a concurrent save
        data = state.path.read_bytes() if state.path.is_file() else b""
    cache = builder_config.create_timing_cache(data) if data else None
    if cache is not None and builder_config.set_timing_cache(cache, ignore_mismatch=False):
        state.loaded_bytes, state.loaded_data = len(data), data
        return state
    state.refused = bool(data)
    builder_config.set_timing_cache(builder_config.create_timing_cache(b""), ignore_mismatch=False)
    return state


def save_timing_cache(builder_config: Any, state: TimingCacheState) -> TimingCacheState:
    """Merge what is on disk now into the config's (updated) cache and write it, under the lock."""
    cache = builder_config.get_timing_cache()
    if cache is None:
        return state
    with cache_lock(state.path):
        on_disk = state.path.read_bytes() if state.path.is_file() else b""
        if on_disk and on_disk != state.loaded_data:
            # Another build saved since we loaded: keep its timings too. A cache from another
            # TensorRT or GPU does not combine; ours (current) then replaces it.
            other = builder_config.create_timing_cache(on_disk)
            if other is not None and cache.combine(other, ignore_mismatch=False):
                state.merged_bytes = len(on_disk)
        data = memoryview(cache.serialize()).tobytes()
        with atomic_file(state.path) as tmp:
            tmp.write_bytes(data)
    state.saved_bytes = len(data)
    return state
