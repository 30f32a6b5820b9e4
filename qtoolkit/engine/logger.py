"""A TensorRT logger that prints warnings and errors and remembers the errors.

Remembering them lets a failed step (parse, build, CUDA init, context creation) end in one line
that quotes TensorRT's own reason. `mark()` before a step and `errors_since(mark)` after it give
the errors logged during that step only, not whatever an earlier step logged.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["make_logger", "quote_errors"]

# A failure line quotes at most this many of the step's errors.
MAX_QUOTED = 3


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """An `ILogger` subclass instance with an `errors` list, `mark()` and `errors_since()`
    (the class is made here because it needs `trt.ILogger` to exist)."""
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

        def mark(self) -> int:
            """Where the next step's errors will start."""
            return len(self.errors)

        def errors_since(self, mark: int) -> list[str]:
            return self.errors[mark:]

    return CapturingLogger()


def quote_errors(errors: list[str], fallback: str = "TensorRT logged no error") -> str:
    """The first line of each of the first MAX_QUOTED errors, joined into one line."""
    lines = [e.strip().splitlines()[0] for e in errors if e and e.strip()]
    if not lines:
        return fallback
    more = len(lines) - MAX_QUOTED
    quoted = "; ".join(lines[:MAX_QUOTED])
    return quoted + (f" (and {more} more above)" if more > 0 else "")
