"""What every `qtool` command shares: error handling, recipe building, option types, parsers."""

from __future__ import annotations

import contextvars
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
    "main_rank_only",
    "name_list",
    "say",
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
    from qtoolkit.ui import labelled

    labelled("error:", "bold red", message)
    return typer.Exit(code)


def _interrupted(hint: str = "") -> typer.Exit:
    from qtoolkit.ui import labelled

    labelled("interrupted" + (":" if hint else ""), "bold yellow", hint)
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
        token = _GIVEN.set(_options_given(fn, kwargs))
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
        finally:
            _GIVEN.reset(token)

    return wrapper  # type: ignore[return-value]


# The running command's parameters: name -> (its option, e.g. --max-shape, the value given).
_GIVEN: contextvars.ContextVar[dict[str, tuple[str, Any]] | None] = contextvars.ContextVar(
    "qtool_options_given", default=None
)


def _options_given(fn: Callable, values: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each option of command `fn` with the value it was called with (from its Typer
    annotations: `typer.Option("--budget")` names the option, else `--param-name`)."""
    import inspect
    import typing

    try:
        hints = typing.get_type_hints(inspect.unwrap(fn), include_extras=True)
    except (NameError, TypeError):  # an annotation that cannot be resolved: no labels
        return {}
    given = {}
    for name, value in values.items():
        # Inside Annotated, typer.Option("--budget", "-b") keeps its first name in `default`.
        decls = [
            d
            for meta in getattr(hints.get(name), "__metadata__", ())
            for d in (getattr(meta, "default", None), *(getattr(meta, "param_decls", None) or ()))
            if isinstance(d, str)
        ]
        longs = [d.split("/")[0] for d in decls if d.startswith("--")]
        given[name] = (max(longs, key=len) if longs else f"--{name.replace('_', '-')}", value)
    return given


def main_rank_only(fn: F) -> F:
    """For a command that is not data-parallel: under torchrun, rank 0 runs it as one plain
    process and the other ranks return at once (instead of every rank writing the same files
    and printing every line)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from qtoolkit import dist
        from qtoolkit.ui import notice

        if not dist.launched():
            return fn(*args, **kwargs)
        if dist.rank() != 0:
            return None
        saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
        os.environ.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
        try:
            notice(f"{saved['WORLD_SIZE']} processes launched: this command runs on rank 0 only")
            return fn(*args, **kwargs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return wrapper  # type: ignore[return-value]


def build_recipe(
    recipe: Path | None,
    sets: list[str] | None,
    flags: dict[str, Any],
    base: dict[str, Any] | None = None,
):
    """`base` (a runtime preset), then the recipe file, then `--set` overrides, then explicit
    flags (None means 'not given'). A bad flag value is reported under the flag's own name
    (`--max-shape 32x0`)."""
    from qtoolkit.recipe import load_recipe

    overrides = list(sets or [])
    labels: dict[str, str] = {}
    for key, value in flags.items():
        if value is None:
            continue
        override = f"{key}={_yaml_value(value)}"
        overrides.append(override)
        label = _option_label(key)
        if label is not None:
            labels[override] = label
    return load_recipe(recipe, overrides, base=base, labels=labels)


def _option_label(key: str) -> str | None:
    """How the user gave recipe field `key` on the command line: `--min-shape 0x16`. The option
    is the command's parameter named like the field (`output` for `*.output_dir`)."""
    field = key.rsplit(".", 1)[-1]
    given = _GIVEN.get() or {}
    for name in (field, field.removesuffix("_dir")):
        if name in given:
            option, raw = given[name]
            return option if isinstance(raw, bool) or raw is None else f"{option} {raw}"
    return None


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return f"'{value}'"
    return str(value)


def show(outcome: Any, *args: Any, highlight: bool | None = None) -> None:
    """A stage's notices (stderr), then its own `summary()` (stdout). Text is printed as it is
    (a path like `[bold]x` keeps its brackets); styles come from rich objects only."""
    from qtoolkit.ui import console, notice, verbatim

    for message in getattr(outcome, "notices", None) or []:
        notice(message)
    summary = verbatim(outcome.summary(*args))
    if highlight is None:
        console.print(summary)
    else:
        console.print(summary, highlight=highlight)


def say(text: str) -> None:
    """One line on stdout, as it is (no markup, no highlighting)."""
    from qtoolkit.ui import console, verbatim

    console.print(verbatim(text), highlight=False)


def check_limit(limit: int | None, option: str = "--limit") -> None:
    """A limit on examples counts at least one (0 used to evaluate one example)."""
    if limit is not None and limit < 1:
        raise QtoolError(f"{option} must be >= 1, not {limit}")


def shape(value: str | None, option: str = "shape") -> list[int] | None:
    """`8x128` -> [8, 128]; both at least 1."""
    if value is None:
        return None
    try:
        batch, seq = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise QtoolError(f"{option} '{value}' must look like BATCHxSEQ, e.g. 8x128") from None
    if batch < 1 or seq < 1:
        raise QtoolError(f"{option} '{value}': batch and sequence length must be >= 1")
    return [batch, seq]


def name_list(value: str | None, option: str) -> list[str] | None:
    """`max,mse` -> ['max', 'mse']; an empty item (`max,,mse`, `''`) is refused, not skipped."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise QtoolError(
            f"{option} '{value}' has an empty name; give comma-separated names, e.g. max,mse"
        )
    return names


def int_list(value: str | None, option: str = "list") -> list[int] | None:
    """`1,8,32` -> [1, 8, 32]; an empty item (`1,,8`) is refused, not skipped."""
    if value is None:
        return None
    try:
        return [int(v) for v in name_list(value, option) or []]
    except (ValueError, QtoolError):
        raise QtoolError(f"{option} '{value}' must be comma-separated integers, e.g. 1,8") from None
