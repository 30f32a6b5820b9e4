"""`qtool autoquant`: PTQ within an accuracy budget of fp32, chosen on dev, reported on test."""

from __future__ import annotations

from typing import Annotated

import typer

from qtoolkit.cli.common import (
    RecipeOpt,
    SetOpt,
    build_recipe,
    handle_errors,
    main_rank_only,
    name_list,
    show,
)

__all__ = ["autoquant"]


@handle_errors
@main_rank_only
def autoquant(
    recipe: RecipeOpt = None,
    budget_points: Annotated[
        float | None,
        typer.Option(
            "--budget", help="Allowed loss vs fp32 on dev, in points (quant.auto.budget_points)."
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Task metric to hold (default the task's primary one) or 'agreement'."),
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated calibrators to choose from (default all).")
    ] = None,
    granularity: Annotated[
        str | None, typer.Option(help="Fallback unit: gemm (default) | role.")
    ] = None,
    max_fallback: Annotated[
        int | None, typer.Option(help="At most this many units in float.")
    ] = None,
    latency: Annotated[
        bool | None,
        typer.Option("--latency/--no-latency", help="Time each fallback step on ONNX Runtime."),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Choose the calibrator (and SmoothQuant alpha) on dev, then leave the fewest GEMMs in
    float that bring dev within the budget of fp32; report test figures with intervals.

    Writes <run>/autoquant (a quantized checkpoint that export-onnx, evaluate and qat read) and
    <run>/autoquant_report/results.{json,md}. The test split is never used for a choice.
    """
    from qtoolkit.pipeline.autoquant import run_autoquant

    r = build_recipe(
        recipe,
        sets,
        {
            "quant.auto.budget_points": budget_points,
            "quant.auto.metric": metric,
            "quant.auto.methods": name_list(methods, "--methods"),
            "quant.auto.granularity": granularity,
            "quant.auto.max_fallback": max_fallback,
            "quant.auto.latency": latency,
        },
    )
    show(run_autoquant(r))
