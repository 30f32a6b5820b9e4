"""`qtool quantize`: the front door, from a fine-tuned checkpoint to a checked INT8 model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qtoolkit.cli.common import RecipeOpt, SetOpt, build_recipe, handle_errors, main_rank_only

__all__ = ["quantize"]


@handle_errors
@main_rank_only
def quantize(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Fine-tuned checkpoint folder (or package:NAME); default: the recipe's model.",
            show_default=False,
        ),
    ] = None,
    calib_file: Annotated[
        Path | None,
        typer.Option(
            help="Calibration text (JSONL/TSV/CSV, plain sentences are enough): most of it sets "
            "the ranges, a held-out slice scores the candidates."
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="Where the model will run: onnxruntime (default), openvino or tensorrt. It picks "
            "the preset (placement, SmoothQuant, calibrators, layout); see --show-preset.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output folder (default <run>/quantized): model.onnx, model.fp32.onnx, "
            "tokenizer, config, checkpoint/ and report.md/json/png.",
            show_default=False,
        ),
    ] = None,
    eval_file: Annotated[
        Path | None,
        typer.Option(
            help="Labelled dev data: candidates are chosen by its task metric (drift breaks "
            "ties) instead of by drift alone."
        ),
    ] = None,
    test_file: Annotated[
        Path | None,
        typer.Option(
            help="Labelled test data, never used to choose: the report's agreement and accuracy "
            "of INT8 against fp32 on the runtime."
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            help="Allow float fallback: the fewest GEMMs in float that bring the selection "
            "figure within this many points of fp32. Default: every GEMM stays INT8.",
            show_default=False,
        ),
    ] = None,
    show_preset: Annotated[
        str | None,
        typer.Option(
            help="Print a runtime's preset (as recipe YAML, with its reasons) and exit.",
            show_default=False,
        ),
    ] = None,
    recipe: RecipeOpt = None,
    sets: SetOpt = None,
) -> None:
    """Quantize a fine-tuned model to INT8 for one runtime, in one command.

    The runtime's preset decides where quantizers go and which SmoothQuant strengths and
    calibrators are tried. Each candidate is scored by how far its outputs drift from fp32 on
    calibration sentences that did not set its ranges (no labels needed), or by the metric of
    --eval-file. The best one is exported in the runtime's Q/DQ layout, validated against
    PyTorch, and compared with fp32 on that runtime (agreement with its interval, accuracy
    with --test-file, latency, size).

    The output folder is what `qtool evaluate`, `qtool benchmark` and `qtool build-engine` take;
    its checkpoint/ is what `qtool qat` and `qtool export-onnx` take. A recipe's quant, calib,
    export and quantize keys (or --set) override any part of the preset.
    """
    from qtoolkit.cli.common import show
    from qtoolkit.pipeline.quantize import preset_base, run_quantize

    if show_preset is not None:
        from qtoolkit.quant.presets import preset_yaml

        typer.echo(preset_yaml(show_preset), nl=False)  # as it is: valid YAML, never re-wrapped
        return
    if runtime is None:
        runtime = build_recipe(recipe, sets, {}).quantize.runtime
    r = build_recipe(
        recipe,
        sets,
        {
            "model.path": model,
            "data.calib_file": calib_file,
            "data.eval_file": eval_file,
            "data.test_file": test_file,
            "quantize.runtime": runtime,
            "quantize.budget_points": budget,
            "quantize.output_dir": output,
        },
        base=preset_base(runtime),
    )
    show(run_quantize(r))
