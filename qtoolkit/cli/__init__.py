"""The `qtool` command line. Each command builds a Recipe (file + flags), calls one library
function and prints the outcome's own `summary()`.

Commands live in modules by stage group (train, quantize, deploy, bench); this file only builds
the Typer app and lists the commands in pipeline order, which is the order `qtool --help` shows.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from qtoolkit.cli import autoquant, bench, deploy, quantize, quantize_cmd, train
from qtoolkit.cli.common import build_recipe, handle_errors
from qtoolkit.cli.help import QtoolCommand, QtoolGroup, version_callback

__all__ = ["app", "build_recipe", "handle_errors", "main"]

app = typer.Typer(
    name="qtool",
    cls=QtoolGroup,
    help="INT8 quantization for BERT-family encoders: `qtool quantize` for one runtime in one "
    "command, or each stage (calibrate, QAT, export, engine, benchmark) on its own.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _qtool(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=version_callback,
            help="Print the versions of qtool, Python and the libraries and runtimes it uses "
            "(torch, transformers, ONNX Runtime, OpenVINO, TensorRT), then exit.",
        ),
    ] = False,
) -> None:
    pass


train.data_app.command("prepare", cls=QtoolCommand)(train.data_prepare)
app.add_typer(train.data_app, name="data")
for _name, _fn in (
    ("quantize", quantize_cmd.quantize),
    ("finetune", train.finetune),
    ("calibrate", quantize.calibrate),
    ("ptq-sweep", quantize.ptq_sweep),
    ("sensitivity", quantize.sensitivity),
    ("autoquant", autoquant.autoquant),
    ("qat", quantize.qat),
    ("inspect", quantize.inspect),
    ("evaluate", train.evaluate),
    ("export-onnx", deploy.export_onnx_cmd),
    ("check-onnx", deploy.check_onnx_cmd),
    ("build-engine", deploy.build_engine_cmd),
    ("benchmark", bench.benchmark),
    ("run", bench.run),
):
    app.command(_name, cls=QtoolCommand)(_fn)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
