"""Reading the user's text files (recipes, data): UTF-8, or one line naming the file, the line and
what to do, never a bare UnicodeDecodeError."""

from __future__ import annotations

import codecs
from pathlib import Path

from qtoolkit.errors import QtoolError, describe_os_error

__all__ = ["read_utf8"]


def read_utf8(path: str | Path) -> str:
    """The text of `path` (UTF-8, with or without a byte-order mark)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise QtoolError(describe_os_error(exc, path)) from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        raise QtoolError(f"{path}: UTF-16 or binary, not UTF-8 text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise QtoolError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}, e.g. Latin-1); "
            "save the file as UTF-8"
        ) from None
