"""Resumable training state: everything a run needs to continue exactly where it stopped.

One file, `state.pt`, holds the model (quantizer amax included), optimizer, scheduler, every RNG,
the epoch, the step, how many batches of the epoch's seeded shuffle order were consumed, the best
metric and the history. It is written to a temporary file and renamed into place, so a crash while
writing leaves the previous state intact. `state.json` repeats the position for people.

A state also records a *fingerprint* of the settings that shape the run (learning rate, batch
size, data, ...): a run with other settings refuses to resume from it instead of silently mixing
two trajectories.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtoolkit.errors import QtoolError, write_failed
from qtoolkit.fsutil import atomic_file, write_json

__all__ = [
    "Checkpointing",
    "STATE_FILE",
    "capture_rng",
    "clear_train_state",
    "normalize_fingerprint",
    "load_train_state",
    "restore_rng",
    "save_train_state",
]

STATE_FILE = "state.pt"
INFO_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class Checkpointing:
    """Where and how often `train` writes its resumable state.

    `every_steps` None: only at epoch ends. `fingerprint`: JSON-able settings a resumed run must
    share with the saved one (the loop adds its own: learning rate, batch size, steps, seed).
    """

    state_dir: Path
    every_steps: int | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states, in a form torch.load(weights_only)
    accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(state_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (see `train`) atomically to `<state_dir>/state.pt`."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / STATE_FILE
    try:
        with atomic_file(target) as tmp:
            torch.save({"version": STATE_VERSION, **state}, tmp)
    except (OSError, RuntimeError, QtoolError) as exc:  # torch hides a full disk
        # The previous state, if any, is intact (atomic write); a new empty folder goes.
        if not any(state_dir.iterdir()):
            state_dir.rmdir()
        raise (exc if isinstance(exc, QtoolError) else write_failed(target, exc)) from None
    info = {
        k: state[k]
        for k in ("epoch", "position", "step", "total", "best_metric", "best_epoch")
        if k in state
    }
    if not math.isfinite(info.get("best_metric", 0.0)):
        info["best_metric"] = None  # nothing evaluated yet; keep the file strict JSON
    write_json(state_dir / INFO_FILE, info)
    return target


def normalize_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint as it reads back: JSON types only (tuples become lists, paths strings)."""
    return json.loads(json.dumps(fingerprint, default=str))


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [k for k in keys if saved.get(k) != current.get(k)]


def load_train_state(state_dir: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, or None when there is none. A state saved with another fingerprint is
    refused with a QtoolError naming the settings that differ."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, don't guess
        raise QtoolError(
            f"cannot read the training state {path} ({type(exc).__name__}); "
            "delete it or restart without resuming"
        ) from None
    if state.get("version") != STATE_VERSION:
        raise QtoolError(f"{path} has state version {state.get('version')}, not {STATE_VERSION}")
    differ = _differences(state.get("fingerprint", {}), normalize_fingerprint(fingerprint))
    if differ:
        raise QtoolError(
            f"{path} was saved by a run with other settings ({', '.join(differ[:4])}); "
            "use the same settings to resume, or restart without resuming"
        )
    return state


def clear_train_state(state_dir: str | Path) -> None:
    """Remove the files `save_train_state` writes (and the folder when that empties it)."""
    state_dir = Path(state_dir)
    for name in (STATE_FILE, INFO_FILE):
        (state_dir / name).unlink(missing_ok=True)
    if state_dir.is_dir() and not any(state_dir.iterdir()):
        state_dir.rmdir()
