"""The exception types the CLI turns into a one-line message, and the words for OS errors."""

from __future__ import annotations

import errno

__all__ = ["Interrupted", "QtoolError", "QtoolWarning", "describe_os_error", "write_failed"]


class QtoolError(Exception):
    """A problem with the user's input or environment, described in one line.

    Library code raises this for anything a user can fix (a wrong path, a bad recipe key, an empty
    dataset). The CLI prints ``error: <message>`` and exits non-zero, without a traceback.
    """


class QtoolWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. a checkpoint imported
    with some quantizers left uncalibrated)."""


class Interrupted(Exception):  # noqa: N818 - it is what the user did, not a failure of ours
    """Ctrl-C during a stage that can say what to do next (e.g. how to resume); the CLI prints
    ``interrupted: <message>`` and exits 130."""


# What to do about the OS errors a user can cause or fix.
_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is exceeded: free some space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: fix the permissions or use another path",
    errno.EPERM: "operation not permitted: fix the permissions or use another path",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENOTDIR: "a part of the path is not a directory: check the path",
    errno.EISDIR: "it is a directory: give a file",
    errno.EEXIST: "it already exists: remove it or use another path",
    errno.ENAMETOOLONG: "the name is too long: use a shorter path",
    errno.EIO: "input/output error: check the disk",
    errno.ELOOP: "a symbolic link loop (a link that points back to itself): use another path",
}


def describe_os_error(exc: OSError, path: object = None) -> str:
    """One line for an OSError: the path it concerns, then what happened and what to do."""
    where = exc.filename if exc.filename is not None else path
    what = _ADVICE.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {what}" if where is not None else what


def write_failed(path: object, exc: BaseException) -> QtoolError:
    """One line for a failed write whose library hides the OSError (torch.save says "unexpected
    pos 75840 vs 75734" on a full disk, safetensors "IoError(...)"): name the path and, when the
    disk is (nearly) full, say so."""
    import shutil
    from pathlib import Path

    if isinstance(exc, OSError) and exc.errno is not None:
        return QtoolError(describe_os_error(exc, path))
    folder = Path(str(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        full = shutil.disk_usage(folder).free < 16 * 2**20
    except OSError:
        full = False
    if full:
        return QtoolError(f"{path}: {_ADVICE[errno.ENOSPC]}")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return QtoolError(f"{path}: could not be written ({first}); check the disk and the path")
