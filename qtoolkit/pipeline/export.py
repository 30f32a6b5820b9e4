"""The export stage: quantized checkpoint -> model.onnx (+ model.fp32.onnx) in a folder that
also holds the tokenizer and config, so `qtool evaluate` and `qtool benchmark` can read it."""

from __future__ import annotations

from pathlib import Path

from qtoolkit.artifacts import (
    EXPORT_FILE,
    Kind,
    check_output_dir,
    fp32_path_for,
    quantized_source,
    write_manifest,
    writing_dir,
)
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["check_opset", "default_export_source", "run_export", "export_checkpoint"]


def default_export_source(recipe: Recipe) -> Path:
    """The recipe's QAT checkpoint if `qtool qat` has run, else its calibrated one."""
    source = quantized_source(recipe)
    if source is None:
        raise QtoolError(
            f"nothing to export: neither {recipe.stage_dir('qat')} nor "
            f"{recipe.stage_dir('calibrated')} exists (run qtool calibrate or qtool qat first)"
        )
    return source


def export_checkpoint(checkpoint: Path, out_path: Path, recipe: Recipe):
    """Export `checkpoint` to `out_path`; the sample batches are data.calib_file's sentences
    tokenized with the checkpoint's own tokenizer.

    The ONNX file(s), config, tokenizer and manifest are written into a temporary folder that
    replaces the export folder in one rename (other exports already in it are kept), so a full
    disk or a killed run never leaves a model.onnx without its manifest."""
    from qtoolkit.export import export_onnx
    from qtoolkit.models.loading import check_max_length
    from qtoolkit.quant import load_quantized
    from qtoolkit.quant.checkpoint import read_manifest
    from qtoolkit.tasks.inputs import model_input_batches

    read_manifest(checkpoint)  # a wrong checkpoint path is reported before anything else
    check_opset(recipe.export.opset)
    data_file = recipe.data.calib_file
    if data_file is None:
        raise QtoolError("export validates on real text: set data.calib_file or pass --calib-file")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise QtoolError(f"output must be a .onnx file, not {out_path}")
    folder = out_path.parent
    # Files are added to the export folder (next to other exports), so it must be new, empty
    # or an export folder, and must hold no input.
    inputs = (checkpoint, data_file)
    check_output_dir(folder, Kind.ONNX, inputs)
    ckpt = load_quantized(checkpoint)
    check_max_length(recipe.data.max_length, ckpt.model.config)
    batches, _ = model_input_batches(
        ckpt.manifest["task"], ckpt.tokenizer, data_file, recipe.data, recipe.export.num_samples, 16
    )
    with writing_dir(folder, Kind.ONNX, inputs, keep_others=True) as tmp:
        result = export_onnx(ckpt, tmp / out_path.name, recipe.export, batches)
        ckpt.model.config.save_pretrained(tmp)
        ckpt.tokenizer.save_pretrained(tmp)
        fp32 = result.fp32_validation
        write_manifest(
            tmp,
            Kind.ONNX,
            task=ckpt.manifest["task"],
            architecture=ckpt.manifest["architecture"],
            source_checkpoint=str(checkpoint),
            onnx=out_path.name,
            validation=result.validation.summary(),
            # Both agreement figures (raw, and on decisions with a margin over atol) per output.
            validation_report=result.validation.to_dict(),
            **({"fp32_validation_report": fp32.to_dict()} if fp32 is not None else {}),
            tensorrt_violations=[str(v) for v in result.violations],
        )
    result.path = out_path
    if result.fp32_path is not None:
        result.fp32_path = fp32_path_for(out_path)
    return result


def check_opset(opset: int) -> None:
    """Refuse, before any work, an opset torch's (TorchScript) ONNX exporter cannot write."""
    from torch.onnx import _constants

    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    if not 13 <= opset <= highest:
        raise QtoolError(
            f"export.opset {opset} is not supported: torch's ONNX exporter writes opsets "
            f"13..{highest} (Q/DQ needs >= 13); use --opset 17"
        )


def run_export(recipe: Recipe):
    """Stage function for `qtool run`: writes <run>/export/model.onnx and model.fp32.onnx."""
    cfg = recipe.export.model_copy(update={"fp32_baseline": True})
    recipe = recipe.model_copy(update={"export": cfg})
    return export_checkpoint(
        default_export_source(recipe), recipe.stage_dir("export") / EXPORT_FILE, recipe
    )
