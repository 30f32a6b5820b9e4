"""A TensorRT logger that prints warnings and errors and remembers the errors.

Remembering them lets a failed parse or build end in one line that quotes TensorRT's own reason.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["make_logger"]


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """An `ILogger` subclass instance with an `errors` list (the class needs `trt` to exist)."""
    severity = trt.ILogger.Severity
    errors_at = {severity.INTERNAL_ERROR, severity.ERROR}
    shown = errors_at | {severity.WARNING} | ({severity.INFO} if verbose else set())

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in errors_at:
                self.errors.append(msg)
            if level in shown:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return CapturingLogger()
