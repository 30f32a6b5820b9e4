"""Terminal output shared by the stages: progress bars and messages on stderr."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = [
    "console",
    "err_console",
    "labelled",
    "note",
    "notice",
    "progress_bar",
    "track",
    "verbatim",
]

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


def verbatim(renderable: Any) -> Any:
    """`renderable` with every plain string in it (alone or in a Group) as literal text: rich
    would read `[bold]` in a user's path as markup and drop it."""
    from rich.console import Group
    from rich.text import Text

    if isinstance(renderable, str):
        return Text(renderable)
    if isinstance(renderable, Group):
        return Group(*(verbatim(r) for r in renderable.renderables))
    return renderable


def labelled(label: str, style: str, message: str = "") -> None:
    """`label message` on stderr: the label styled, the message as it is."""
    from rich.text import Text

    text = Text(label, style=style)
    if message:
        text.append(" " + message)
    err_console.print(text, highlight=False, soft_wrap=True)


def note(message: str) -> Any:
    """A `note: ...` line to put in a summary (the label styled, the message as it is)."""
    from rich.text import Text

    return Text("note:", style="yellow").append(" " + message)


def notice(message: str) -> None:
    if not _is_main():
        return
    err_console.print(note(message), highlight=False)
