"""Measurement and whole-pipeline commands: benchmark, run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qtoolkit.cli.common import (
    RecipeOpt,
    SetOpt,
    build_recipe,
    handle_errors,
    int_list,
    main_rank_only,
    name_list,
    say,
    show,
)

__all__ = ["benchmark", "run"]


@handle_errors
@main_rank_only
def benchmark(
    recipe: RecipeOpt = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH to time (repeatable). NAME: a backend (ort-int8, torch-fp32, trt-int8, "
            "...), LABEL:BACKEND, or a label (backend read from the file)."
        ),
    ] = None,
    backends: Annotated[
        str | None, typer.Option(help="Comma-separated default backends to time.")
    ] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="e.g. 1,8,32")] = None,
    seq_lengths: Annotated[str | None, typer.Option(help="e.g. 64,128")] = None,
    iterations: Annotated[int | None, typer.Option(help="Timed iterations per shape.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Untimed iterations first.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (ORT and PyTorch).")] = None,
    accuracy_limit: Annotated[
        int | None, typer.Option(help="Evaluate accuracy on the first N test examples.")
    ] = None,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="Latency only.")] = False,
    sets: SetOpt = None,
) -> None:
    """Latency (p50/p90/p99), throughput and accuracy across backends and shapes.

    By default times the recipe's own outputs (fine-tuned / quantized checkpoints, exported
    ONNX, TensorRT engine); backends this machine cannot run are skipped with the reason.
    Writes bench/results.{json,md} and an accuracy-vs-latency plot.
    """
    from qtoolkit.bench.targets import resolve_targets
    from qtoolkit.pipeline.benchmark import run_benchmark

    backend_list = name_list(backends, "--backends")
    if target and backend_list is None:
        backend_list = []
    r = build_recipe(
        recipe,
        sets,
        {
            "bench.backends": backend_list,
            "bench.batch_sizes": int_list(batch_sizes, "--batch-sizes"),
            "bench.seq_lengths": int_list(seq_lengths, "--seq-lengths"),
            "bench.iterations": iterations,
            "bench.warmup": warmup,
            "bench.threads": threads,
            "bench.accuracy_limit": accuracy_limit,
            "bench.accuracy": False if no_accuracy else None,
        },
    )
    show(run_benchmark(r, resolve_targets(r, target or [])))


@handle_errors
def run(
    recipe: Annotated[Path, typer.Argument(help="The recipe to run.")],
    force: Annotated[
        bool, typer.Option("--force", help="Re-run stages even if up to date.")
    ] = False,
    only: Annotated[str | None, typer.Option(help="Run just this stage.")] = None,
    sets: SetOpt = None,
) -> None:
    """Run every stage the recipe configures, in order, skipping those already up to date.

    Stages: finetune, calibrate / ptq-sweep, qat, export-onnx, build-engine, benchmark. Stages
    that need a GPU are skipped on CPU with a notice. Writes run.json (recipe hash, versions,
    input checksums, timings) and report.md linking every output.
    """
    from qtoolkit.pipeline.run import run_pipeline
    from qtoolkit.ui import console, notice, verbatim

    r = build_recipe(recipe, sets, {})

    def on_stage(rec) -> None:
        if rec.is_warning:
            notice(rec.summary())
        else:
            console.print(verbatim(rec.summary()), highlight=False)
        for message in rec.notices if rec.status != "running" else []:
            notice(message)

    say(run_pipeline(r, force=force, only=only, on_stage=on_stage).summary())
