"""Terminal output shared by the stages: progress bars and messages on stderr."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "err_console", "track", "notice", "progress_bar"]

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def _is_main() -> bool:
    """Rank 0 of a torchrun launch (or a plain run): the only process that shows progress and
    notices. Read from the environment so it holds before the process group exists."""
    return os.environ.get("RANK", "0") == "0"


def _columns():
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _progress() -> Progress:
    return Progress(*_columns(), console=err_console, transient=False, disable=not _is_main())


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr (plain lines when stderr is not a terminal)."""
    with Progress(
        *_columns(), console=err_console, transient=False, disable=not _is_main()
    ) as progress:
        yield from progress.track(items, total=total, description=description)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[str], None]]:
    """A bar advanced by calling the yielded function with a status text."""
    with Progress(
        *_columns(), console=err_console, transient=False, disable=not _is_main()
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(status: str) -> None:
            progress.update(task, advance=1, description=f"{description} {status}")

        yield advance


def notice(message: str) -> None:
    if not _is_main():
        return
    err_console.print(f"[yellow]note:[/yellow] {message}", highlight=False)
