"""Atomic outputs: a stage writes into a temporary sibling and renames it into place.

Temporary names carry the writing process's id (`.model.onnx.4711-ab12cd34.tmp`), so a run
killed before its rename (SIGKILL, a power cut) leaves something the next run recognises as
qtool's own leftover (`is_leftover`) and removes (`clean_leftovers`) instead of taking it for a
user's file.

Also the facts about a path that `qtoolkit.artifacts`' write rules use: where it really is (a
link loop is one line), which files a folder holds besides leftovers, and whether it lies on a
kernel file system (/proc, /sys) that holds no files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError, describe_os_error

__all__ = [
    "atomic_dir",
    "atomic_file",
    "carry_over",
    "clean_leftovers",
    "files_under",
    "is_leftover",
    "resolved",
    "temp_dir_beside",
    "virtual_file_system",
    "write_json",
]

# `.NAME.PID-XXXXXXXX.tmp` (mkdtemp/mkstemp), `.NAME.XXXXXXXX.tmp` (qtool before PIDs were
# recorded) and `.NAME.old-PID` (a replaced folder not yet deleted).
_LEFTOVER = re.compile(
    r"^\.(?P<name>.+)\.(?:(?:(?P<pid>\d+)-)?[A-Za-z0-9_]{8}\.tmp|old-(?P<old>\d+))$"
)


def is_leftover(path: str | Path) -> bool:
    """Whether `path` is a temporary file or folder of a qtool run that did not finish."""
    match = _LEFTOVER.match(Path(path).name)
    if match is None:
        return False
    pid = match.group("pid") or match.group("old")
    return pid is None or not _alive(int(pid))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def clean_leftovers(folder: str | Path, name: str | None = None) -> None:
    """Remove what killed qtool runs left in `folder` (only those for `name`, if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        match = _LEFTOVER.match(path.name)
        if match is None or (name is not None and match.group("name") != name):
            continue
        if not is_leftover(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def files_under(folder: Path) -> list[Path]:
    """The files under `folder`, without what killed qtool runs left there."""
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(map(is_leftover, p.relative_to(folder).parts))
    ]


def resolved(path: Path, what: str = "output") -> Path:
    """`path` made absolute with its links followed; a link loop is one line, not an error of
    Python's own."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a link loop
        raise QtoolError(
            f"{what} {path}: a symbolic link loop (the link points back to itself); "
            "use another path"
        ) from None


# File systems that hold no files (the kernel's views): writing there fails, or worse.
_VIRTUAL_FS = frozenset(
    ("proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
     "securityfs", "configfs", "pstore", "bpf", "mqueue", "fusectl", "binfmt_misc")
)  # fmt: skip


def virtual_file_system(path: Path) -> str | None:
    """The kernel file system `path` is on (proc, sysfs, ...), or None for one that holds
    files (or when it cannot be told)."""
    kind = _file_system(path)
    return kind if kind in _VIRTUAL_FS else None


def _file_system(path: Path) -> str | None:
    """The type of the file system `path` is on (Linux), or None when it cannot be told."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (path == Path(point) or Path(point) in path.parents) and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-"


def temp_dir_beside(target: str | Path) -> Path:
    """A new temporary folder next to `target` (same file system, so a rename moves it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target.parent, target.name)
    return Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent))


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
        tmp = temp_dir_beside(target)
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


def carry_over(old: str | Path, new: str | Path) -> None:
    """Link (else copy) into `new` every file of `old` that `new` has no file for, leftovers of
    killed runs excepted. Call it once `new` is written: a file written into `new` afterwards
    could reach the old folder's file through the link."""
    old, new = Path(old), Path(new)
    for path in sorted(old.rglob("*")):
        rel = path.relative_to(old)
        if not path.is_file() or (new / rel).exists() or any(map(is_leftover, rel.parts)):
            continue
        (new / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, new / rel)
        except OSError:
            shutil.copy2(path, new / rel)


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; it is renamed to `target` on success."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target.parent, target.name)
        fd, name = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
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
