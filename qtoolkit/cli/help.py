"""How `qtool --help` reads: paragraphs reflowed to the terminal, no type label on flags, and
`qtool --version`.

Docstrings are written wrapped at 100 columns; Typer's rich help keeps those line breaks after
the first paragraph, so a sentence broke mid-line at any other width. `reflow` joins the lines
of each paragraph once, when the command is built, and the terminal wraps them. Typer labels
every option with its type, flags included (`--help <bool>`); a flag takes no value, so its
label is removed. Both are done by the command classes the app is built with (`cls=`), not by
patching Typer.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["QtoolCommand", "QtoolGroup", "reflow", "version_callback", "version_lines"]

_LIST_ITEM = re.compile(r"\s*(?:[-*]|\d+[.)])\s")


def reflow(text: str | None) -> str | None:
    """Each paragraph on one line (a list item on its own line); `\\b` paragraphs, which click
    keeps verbatim, are kept."""
    if not text:
        return text
    paragraphs = []
    for para in inspect.cleandoc(text).split("\n\n"):
        if para.startswith("\b"):
            paragraphs.append(para)
            continue
        lines: list[str] = []
        for line in para.splitlines():
            if lines and not _LIST_ITEM.match(line):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _unlabel_flag(param: Any) -> Any:
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""  # Typer shows the metavar, when set, in place of the type label
    return param


class QtoolCommand(TyperCommand):
    """A `qtool` command: reflowed help, flags without a type label."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        for param in self.params:
            _unlabel_flag(param)

    def get_help_option(self, ctx: Any) -> Any:
        return _unlabel_flag(super().get_help_option(ctx))


class QtoolGroup(TyperGroup):
    """The `qtool` app and its sub-apps: reflowed help, flags without a type label."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        for param in self.params:
            _unlabel_flag(param)

    def get_help_option(self, ctx: Any) -> Any:
        return _unlabel_flag(super().get_help_option(ctx))


def version_lines() -> list[str]:
    """qtool's version, Python's, and each library and runtime it uses, installed or not."""
    import platform

    from qtoolkit.version import DISTRIBUTIONS, __version__, installed_distribution

    lines = [f"qtool {__version__}", f"python {platform.python_version()}"]
    for name in DISTRIBUTIONS:
        found = installed_distribution(name)
        if found is None:
            lines.append(f"{name} not installed")
        else:
            dist, version = found
            lines.append(f"{name} {version}" + (f" ({dist})" if dist != name else ""))
    return lines


def version_callback(value: bool) -> None:
    if value:
        typer.echo("\n".join(version_lines()))
        raise typer.Exit()
