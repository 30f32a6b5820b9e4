"""Stage stamps for `qtool run`: after a stage runs, `qtool-run.json` in its output folder
holds a fingerprint of what it read (recipe fields, data file checksums, the stages before it)
and the size and mtime of every file it wrote. A stage is up to date while both still match."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = [
    "RUN_ONLY",
    "STAMP",
    "digest",
    "now",
    "recipe_value",
    "snapshot",
    "stamped",
    "write_stamp",
]

STAMP = "qtool-run.json"
RUN_ONLY = {"output_dir", "resume", "save_every_steps"}  # change no result


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _sha256(path: Path, cache: dict[Path, str]) -> str:
    if path not in cache:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cache[path] = h.hexdigest()
    return cache[path]


def snapshot(paths: list[Path]) -> dict[str, list[int]]:
    """path -> [size, mtime_ns] of every file under `paths` (stamps excluded)."""
    files = {}
    for root in paths:
        if not root.exists():
            continue
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in found:
            if p.name != STAMP:
                st = p.stat()
                files[str(p)] = [st.st_size, st.st_mtime_ns]
    return files


def recipe_value(recipe: Recipe, key: str, cache: dict[Path, str]) -> Any:
    """What a stage's fingerprint records for recipe field `key` (a section or section.field;
    *_file fields by checksum, `model` with its checkpoint's files); `cache` holds checksums."""
    node: Any = recipe
    for part in key.split("."):
        node = getattr(node, part)
    if hasattr(node, "model_dump"):
        value = node.model_dump(mode="json", exclude=RUN_ONLY)
        if key == "model" and node.path:
            from qtoolkit.models import resolve_model_ref

            # A changed checkpoint (same path, new weights) must re-run what reads it.
            with contextlib.suppress(QtoolError):
                value["files"] = snapshot([resolve_model_ref(node.path)])
        return value
    if key.endswith("_file") and node is not None and Path(node).is_file():
        return {"path": str(node), "sha256": _sha256(Path(node), cache)}
    return str(node) if isinstance(node, Path) else node


def digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def stamped(outputs: list[Path]) -> dict[str, Any] | None:
    """The stage's stamp if the files it lists are still exactly there, else None."""
    stamp = outputs[0] / STAMP
    if not stamp.is_file():
        return None
    saved = json.loads(stamp.read_text())
    return saved if saved.get("outputs") == snapshot(outputs) else None


def write_stamp(stage: str, fingerprint: str | None, outputs: list[Path], seconds: float) -> None:
    """Record that `stage` just wrote `outputs` (the stamp goes into the first folder)."""
    from qtoolkit.fsutil import write_json

    outputs[0].mkdir(parents=True, exist_ok=True)
    stamp = {
        "stage": stage,
        "fingerprint": fingerprint,
        "outputs": snapshot(outputs),
        "finished": now(),
        "seconds": seconds,
    }
    write_json(outputs[0] / STAMP, stamp)
