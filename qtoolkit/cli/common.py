"""What every `qtool` command shares: error handling, recipe building, option types, parsers."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from qtoolkit.errors import Interrupted, QtoolError, describe_os_error

__all__ = [
    "RecipeOpt",
    "SetOpt",
    "build_recipe",
    "check_limit",
    "handle_errors",
    "int_list",
    "shape",
    "show",
]

F = TypeVar("F", bound=Callable[..., Any])

RecipeOpt = Annotated[
    Path | None, typer.Option("--recipe", "-r", help="YAML recipe; flags override its fields.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override any recipe field: --set calib.percentile=99.9 (repeatable)."
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    from qtoolkit.ui import err_console

    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _interrupted(hint: str = "") -> typer.Exit:
    from qtoolkit.ui import err_console

    text = "[bold yellow]interrupted[/bold yellow]" + (f": {hint}" if hint else "")
    err_console.print(text, highlight=False, soft_wrap=True)
    return typer.Exit(130)


def _rank_fail(exc: BaseException, message: str, code: int = 2) -> typer.Exit:
    """Under torchrun the line names the rank; a rank stopped by another's failure is silent."""
    from qtoolkit.dist import defer_to_main, failure_line

    line = failure_line(exc, message)
    if line is None:
        return typer.Exit(1)
    defer_to_main()
    return _fail(line, code)


def handle_errors(fn: F) -> F:
    """Turn QtoolError, OS errors, Ctrl-C (and anything unexpected) into one line on stderr and
    a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except QtoolError as exc:
            raise _rank_fail(exc, str(exc)) from None
        except (typer.Exit, typer.Abort):
            raise
        except Interrupted as exc:
            raise _interrupted(str(exc)) from None
        except KeyboardInterrupt:
            raise _interrupted() from None
        except OSError as exc:  # a full or read-only disk, a permission, a vanished file
            if os.environ.get("QTOOL_DEBUG"):
                raise
            raise _fail(describe_os_error(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the one place that catches everything
            if os.environ.get("QTOOL_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise _rank_fail(
                exc,
                f"internal error: {type(exc).__name__}: {first} "
                "(set QTOOL_DEBUG=1 for a traceback)",
                code=1,
            ) from None

    return wrapper  # type: ignore[return-value]


def build_recipe(recipe: Path | None, sets: list[str] | None, flags: dict[str, Any]):
    """Recipe file, then `--set` overrides, then explicit flags (None means 'not given')."""
    from qtoolkit.recipe import load_recipe

    overrides = list(sets or [])
    overrides += [f"{k}={_yaml_value(v)}" for k, v in flags.items() if v is not None]
    return load_recipe(recipe, overrides)


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return f"'{value}'"
    return str(value)


def show(outcome: Any, *args: Any, highlight: bool | None = None) -> None:
    """A stage's notices (stderr), then its own `summary()` (stdout)."""
    from qtoolkit.ui import console, notice

    for message in getattr(outcome, "notices", None) or []:
        notice(message)
    if highlight is None:
        console.print(outcome.summary(*args))
    else:
        console.print(outcome.summary(*args), highlight=highlight)


def check_limit(limit: int | None, option: str = "--limit") -> None:
    """A limit on examples counts at least one (0 used to evaluate one example)."""
    if limit is not None and limit < 1:
        raise QtoolError(f"{option} must be >= 1, not {limit}")


def shape(value: str | None) -> list[int] | None:
    """`8x128` -> [8, 128]."""
    if value is None:
        return None
    try:
        batch, seq = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise QtoolError(f"shape '{value}' must look like BATCHxSEQ, e.g. 8x128") from None
    return [batch, seq]


def int_list(value: str | None) -> list[int] | None:
    """`1,8,32` -> [1, 8, 32]."""
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise QtoolError(f"'{value}' must be comma-separated integers, e.g. 1,8") from None
