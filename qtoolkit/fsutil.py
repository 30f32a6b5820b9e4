"""Atomic outputs: a stage writes into a temporary sibling and renames it into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError, describe_os_error

__all__ = ["atomic_dir", "atomic_file", "write_json"]


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `target` only if the block succeeds.

    No policy here: which folders may be replaced is decided by `qtoolkit.artifacts`, whose
    `writing_dir` checks its rules and then calls this.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise QtoolError(f"output {target} exists and is not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise QtoolError(describe_os_error(_named(exc, None, target), target)) from None
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; an output gets the usual permissions
    try:
        yield tmp
    except OSError as exc:  # a full or read-only disk: name the output, not the temporary
        shutil.rmtree(tmp, ignore_errors=True)
        raise QtoolError(describe_os_error(_named(exc, tmp, target), target)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _usual_permissions(tmp)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; it is renamed to `target` on success."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise QtoolError(describe_os_error(_named(exc, None, target), target)) from None
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise QtoolError(describe_os_error(_named(exc, tmp, target), target)) from None
    finally:
        tmp.unlink(missing_ok=True)


def _named(exc: OSError, tmp: Path | None, target: Path) -> OSError:
    """The OSError with the user's output path in place of the temporary one."""
    name = str(exc.filename) if exc.filename is not None else None
    if name is None or tmp is None:
        return OSError(exc.errno, exc.strerror, str(target))
    if name.startswith(str(tmp)):
        name = str(target) + name[len(str(tmp)) :]
    return OSError(exc.errno, exc.strerror, name)


def _usual_permissions(root: Path) -> None:
    """Give what a stage wrote under `root` the umask's permissions: some writers (safetensors)
    create files 0600, which other users of a shared output folder could not read."""
    mask = _umask()
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        executable = path.is_dir() or path.stat().st_mode & 0o111
        path.chmod((0o777 if executable else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
