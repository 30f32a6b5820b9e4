"""Data and fp32 commands: data prepare, finetune, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qtoolkit.cli.common import (
    RecipeOpt,
    SetOpt,
    build_recipe,
    check_limit,
    handle_errors,
    main_rank_only,
    say,
    show,
)
from qtoolkit.cli.help import QtoolGroup

__all__ = ["data_prepare", "finetune", "evaluate", "data_app"]

data_app = typer.Typer(cls=QtoolGroup, help="Prepare datasets.", no_args_is_help=True)


@handle_errors
@main_rank_only
def data_prepare(
    name: Annotated[str, typer.Argument(help="Dataset: rt-sentiment.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: data/<name>.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Shuffle seed for the splits.")] = 13,
    cache: Annotated[
        Path | None, typer.Option(help="Folder holding (or receiving) the downloaded package.")
    ] = None,
) -> None:
    """Fetch a dataset by package name and write deterministic JSONL splits.

    rt-sentiment: 10,605 Rotten Tomatoes sentences (Hutto & Gilbert, ICWSM 2014) from the
    vaderSentiment 3.3.2 source package, split into disjoint train/dev/calib/test files.
    """
    from qtoolkit.data.prepare import prepare_dataset

    show(prepare_dataset(name, output or Path("data") / name, seed, cache))


@handle_errors
def finetune(
    recipe: RecipeOpt = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint directory or package:NAME.")] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="sequence-classification | question-answering | token-classification | "
            "multiple-choice | masked-lm | next-sentence-prediction."
        ),
    ] = None,
    train_file: Annotated[Path | None, typer.Option(help="Training data.")] = None,
    eval_file: Annotated[Path | None, typer.Option(help="Data evaluated after each epoch.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (fractions allowed).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: <run>/finetuned.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Fine-tune an fp32 model on a task: the baseline that later gets quantized.

    Evaluates after each epoch and keeps the best checkpoint (a plain Hugging Face directory).
    """
    from qtoolkit.pipeline.finetune import run_finetune

    r = build_recipe(
        recipe,
        sets,
        {
            "model.path": model,
            "model.task": task,
            "data.train_file": train_file,
            "data.eval_file": eval_file,
            "finetune.epochs": epochs,
            "finetune.max_steps": max_steps,
            "finetune.learning_rate": learning_rate,
            "finetune.batch_size": batch_size,
            "finetune.output_dir": output,
        },
    )
    show(run_finetune(r))


@handle_errors
@main_rank_only
def evaluate(
    target: Annotated[
        Path,
        typer.Argument(
            help="fp32 or quantized checkpoint dir, model.onnx, OpenVINO IR, or an engine."
        ),
    ],
    recipe: RecipeOpt = None,
    data: Annotated[Path | None, typer.Option(help="Data file (default data.test_file).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    threads: Annotated[
        int | None, typer.Option(help="ONNX Runtime / OpenVINO CPU threads.")
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(help="torch | onnxruntime | openvino | tensorrt (default: by the file)."),
    ] = None,
    compare_to: Annotated[
        Path | None,
        typer.Option(help="A metrics JSON from another evaluate run: report prediction agreement."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write metrics (and predictions) JSON.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Evaluate a task on an fp32 or quantized checkpoint, an ONNX model (ONNX Runtime, or
    OpenVINO with --runtime openvino), OpenVINO IR or a TensorRT engine."""
    from qtoolkit.artifacts import Kind, check_output_file
    from qtoolkit.fsutil import write_json
    from qtoolkit.pipeline.evaluate import run_evaluate

    check_limit(limit)
    r = build_recipe(recipe, sets, {})
    if output is not None:  # before any work: never over an input or a file of another kind
        inputs = (target, data or r.data.test_file, compare_to, recipe)
        check_output_file(output, Kind.METRICS, inputs)
    outcome = run_evaluate(target, r, data, limit, threads=threads, runtime=runtime)
    if compare_to is not None:
        outcome.compare_with(compare_to)
    show(outcome)
    if output is not None:
        write_json(output, outcome.to_json())
        say(f"wrote {output}")
