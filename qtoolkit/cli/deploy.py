"""Deployment commands: export-onnx, check-onnx, build-engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qtoolkit.cli.common import (
    RecipeOpt,
    SetOpt,
    build_recipe,
    handle_errors,
    main_rank_only,
    say,
    shape,
    show,
)
from qtoolkit.errors import QtoolError

__all__ = ["export_onnx_cmd", "check_onnx_cmd", "build_engine_cmd"]


@handle_errors
@main_rank_only
def export_onnx_cmd(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="Calibrated or QAT checkpoint (default: the recipe's QAT, else calibrated)."
        ),
    ] = None,
    recipe: RecipeOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="ONNX file (default <run>/export/model.onnx)."),
    ] = None,
    fp16: Annotated[
        bool | None,
        typer.Option("--fp16/--fp32", help="Non-quantized parts in fp16 (TensorRT 11)."),
    ] = None,
    fp32_baseline: Annotated[
        bool | None,
        typer.Option("--fp32-baseline/--no-fp32-baseline", help="Also write <name>.fp32.onnx."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Q/DQ layout: tensorrt | onnxruntime | openvino.")
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (>= 13, default 17).")] = None,
    calib_file: Annotated[
        Path | None, typer.Option(help="Sentences to trace and validate with.")
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Export a quantized checkpoint to QDQ ONNX, validate it in ONNX Runtime against PyTorch
    and check it against TensorRT's explicit-quantization rules.

    The folder also gets the tokenizer, config.json and qtool's manifest, so `qtool evaluate
    model.onnx` and `qtool benchmark` can use it. Nothing is written if validation fails.
    """
    from qtoolkit.pipeline.export import default_export_source, export_checkpoint

    r = build_recipe(
        recipe,
        sets,
        {
            "export.fp16": fp16,
            "export.fp32_baseline": fp32_baseline,
            "export.target": target,
            "export.opset": opset,
            "data.calib_file": calib_file,
        },
    )
    source = checkpoint or default_export_source(r)
    out_path = output or r.stage_dir("export") / "model.onnx"
    # ExportResult.summary() already lists its notices, so they are not printed separately.
    say(export_checkpoint(source, out_path, r).summary())


@handle_errors
@main_rank_only
def check_onnx_cmd(
    model: Annotated[Path, typer.Argument(help="An ONNX model.")],
    recipe: RecipeOpt = None,
    allow_float: Annotated[
        bool, typer.Option("--allow-float", help="Check a model without Q/DQ nodes too.")
    ] = False,
    sets: SetOpt = None,
) -> None:
    """Check an ONNX model against TensorRT's explicit-quantization rules (static, no TensorRT).

    Reports every violation per node and exits 1 if there is any. Which GEMM inputs and residual
    adds must be quantized comes from the model's qtoolkit metadata, else from the recipe. A
    model with no Q/DQ node at all is refused as "not quantized" unless --allow-float is given.
    """
    from qtoolkit.export import check_onnx, format_violations
    from qtoolkit.export.check import has_qdq, load_onnx

    if not model.is_file():
        raise QtoolError(f"ONNX model not found: {model}")
    quant_cfg = build_recipe(recipe, sets, {}).quant if (recipe or sets) else None
    proto = load_onnx(model)
    if not has_qdq(proto) and not allow_float:
        raise QtoolError(
            f"{model} is not quantized (no QuantizeLinear/DequantizeLinear nodes), so TensorRT "
            "would build it in float; export a calibrated checkpoint, or pass --allow-float"
        )
    violations = check_onnx(proto, quant_cfg)
    say(format_violations(violations))
    if violations:
        raise typer.Exit(1)


@handle_errors
@main_rank_only
def build_engine_cmd(
    onnx_model: Annotated[Path, typer.Argument(help="QDQ ONNX model (from qtool export-onnx).")],
    recipe: RecipeOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Engine file (default <run>/engine/model.engine); with --runtime openvino a "
            "folder (default <run>/openvino).",
        ),
    ] = None,
    runtime: Annotated[
        str, typer.Option(help="tensorrt (an engine, needs a GPU) | openvino (IR for CPUs).")
    ] = "tensorrt",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the equivalent trtexec command.")
    ] = False,
    trt_version: Annotated[
        str | None,
        typer.Option(help="With --dry-run: 10 or 11 (default: the installed one, else both)."),
    ] = None,
    min_shape: Annotated[str | None, typer.Option(help="Smallest BATCHxSEQ, e.g. 1x16.")] = None,
    opt_shape: Annotated[str | None, typer.Option(help="BATCHxSEQ tuned for, e.g. 8x128.")] = None,
    max_shape: Annotated[str | None, typer.Option(help="Largest BATCHxSEQ, e.g. 32x128.")] = None,
    workspace_mib: Annotated[int | None, typer.Option(help="Builder workspace limit.")] = None,
    timing_cache: Annotated[
        Path | None, typer.Option(help="Timing cache reused across builds.")
    ] = None,
    strongly_typed: Annotated[
        bool | None,
        typer.Option(
            "--strongly-typed/--weakly-typed",
            help="TensorRT 10 only (11 is always strongly typed). Default: weakly typed + flags.",
        ),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Build a TensorRT engine from a QDQ ONNX model (needs an NVIDIA GPU and TensorRT >= 10),
    or with --runtime openvino OpenVINO IR for CPUs, validated against ONNX Runtime.

    TensorRT 10: explicit quantization from the Q/DQ nodes, with the FP16 (and INT8) builder
    flags. TensorRT 11: strongly typed, precision taken from the ONNX. Writes the engine, a
    .build.json report and a .trtexec.sh with the equivalent trtexec command.
    """
    if runtime not in ("tensorrt", "openvino"):
        raise QtoolError(f"--runtime must be tensorrt or openvino, not '{runtime}'")
    if runtime == "openvino":
        from qtoolkit.runtime.ov_build import build_openvino

        if dry_run:
            raise QtoolError("--dry-run prints a trtexec command: it is for --runtime tensorrt")
        r = build_recipe(recipe, sets, {})
        show(build_openvino(onnx_model, output or r.stage_dir("openvino"), r))
        return
    from qtoolkit.engine import build_engine
    from qtoolkit.engine import dry_run as engine_dry_run

    r = build_recipe(
        recipe,
        sets,
        {
            "engine.min_shape": shape(min_shape, "--min-shape"),
            "engine.opt_shape": shape(opt_shape, "--opt-shape"),
            "engine.max_shape": shape(max_shape, "--max-shape"),
            "engine.workspace_mib": workspace_mib,
            "engine.timing_cache": timing_cache,
            "engine.strongly_typed": strongly_typed,
        },
    )
    engine_path = output or r.stage_dir("engine") / "model.engine"
    if dry_run:
        # Without TensorRT here and no --trt-version: one commented command per version.
        print(engine_dry_run(onnx_model, engine_path, r.engine, trt_version))
        return
    show(build_engine(onnx_model, engine_path, r.engine))
