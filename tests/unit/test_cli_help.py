"""`qtool --help` reads cleanly and `qtool --version` names what is installed."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from qtoolkit.cli import app
from qtoolkit.cli.help import reflow, version_lines
from qtoolkit.version import DISTRIBUTIONS, __version__, installed_distribution

runner = CliRunner()


def _commands() -> list[list[str]]:
    """Every command path: [], ["quantize"], ..., ["data"], ["data", "prepare"]."""
    root = typer.main.get_command(app)
    paths = [[]]
    for name, cmd in root.commands.items():
        paths.append([name])
        paths += [[name, sub] for sub in getattr(cmd, "commands", {})]
    return paths


def _help(path: list[str], width: int = 100) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


def test_version_names_qtool_python_and_every_runtime():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"qtool {__version__}" and lines[1].startswith("python ")
    for name in ("torch", "transformers", "onnxruntime", "openvino", "tensorrt"):
        found = installed_distribution(name)
        line = next(ln for ln in lines if ln.split()[0] == name)
        if found is None:
            assert line == f"{name} not installed"
        else:
            assert line.split()[1] == found[1]
    assert lines == version_lines() and len(lines) == 2 + len(DISTRIBUTIONS)


def test_version_names_the_distribution_when_it_is_not_the_usual_one(monkeypatch):
    import importlib.metadata as md

    real = md.version

    def version(dist: str) -> str:
        if dist == "onnxruntime":
            raise md.PackageNotFoundError(dist)
        return "9.9.9" if dist == "onnxruntime-gpu" else real(dist)

    monkeypatch.setattr(md, "version", version)
    assert "onnxruntime 9.9.9 (onnxruntime-gpu)" in version_lines()


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "qtool")
def test_help_has_no_type_label_on_flags(path):
    text = _help(path)
    assert "<bool>" not in text
    assert re.search(r"--help +Show this message", text), text


def test_every_command_help_is_reflowed():
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        for c in [cmd, *getattr(cmd, "commands", {}).values()]:
            for para in (c.help or "").split("\n\n"):
                assert "\n" not in para, f"{name}: a paragraph keeps its line breaks: {para!r}"


def test_wide_terminal_shows_a_paragraph_on_one_line():
    # At 200 columns no sentence of the quantize help breaks where the docstring was wrapped.
    text = _help(["quantize"], width=200)
    assert "are tried. Each candidate is scored by how far its outputs drift from fp32" in text


def test_reflow_joins_paragraph_lines_and_keeps_list_items_and_verbatim_blocks():
    text = """First line
    goes on.

    - item one
      continued
    - item two

    \b
    keep
      as is
    """
    assert reflow(text) == (
        "First line goes on.\n\n- item one continued\n- item two\n\n\b\nkeep\n  as is"
    )


def test_ptq_sweep_help_says_it_chooses_on_dev():
    first = typer.main.get_command(app).commands["ptq-sweep"].help.split("\n\n")[0]
    assert "choose on dev" in first and "on test" in first
