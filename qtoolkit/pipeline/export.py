"""The export stage: quantized checkpoint -> model.onnx (+ model.fp32.onnx) in a folder that
also holds the tokenizer and config, so `qtool evaluate` and `qtool benchmark` can read it."""

from __future__ import annotations

from pathlib import Path

from qtoolkit.artifacts import EXPORT_FILE, Kind, check_output_dir, quantized_source, write_manifest
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["default_export_source", "run_export", "export_checkpoint"]


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
    tokenized with the checkpoint's own tokenizer."""
    from qtoolkit.artifacts import record_files
    from qtoolkit.export import export_onnx
    from qtoolkit.quant import load_quantized
    from qtoolkit.quant.checkpoint import read_manifest
    from qtoolkit.tasks.inputs import model_input_batches

    read_manifest(checkpoint)  # a wrong checkpoint path is reported before anything else
    data_file = recipe.data.calib_file
    if data_file is None:
        raise QtoolError("export validates on real text: set data.calib_file or pass --calib-file")
    folder = Path(out_path).parent
    # Files are added to the export folder (next to other exports), so it must be new, empty
    # or an export folder, and must hold no input.
    check_output_dir(folder, Kind.ONNX, inputs=(checkpoint, data_file))
    ckpt = load_quantized(checkpoint)
    batches, _ = model_input_batches(
        ckpt.manifest["task"], ckpt.tokenizer, data_file, recipe.data, recipe.export.num_samples, 16
    )
    result = export_onnx(ckpt, out_path, recipe.export, batches)
    ckpt.model.config.save_pretrained(folder)
    ckpt.tokenizer.save_pretrained(folder)
    fp32 = result.fp32_validation
    write_manifest(
        folder,
        Kind.ONNX,
        task=ckpt.manifest["task"],
        architecture=ckpt.manifest["architecture"],
        source_checkpoint=str(checkpoint),
        onnx=Path(out_path).name,
        validation=result.validation.summary(),
        # Both agreement figures (raw, and on decisions with a margin over atol) per output.
        validation_report=result.validation.to_dict(),
        **({"fp32_validation_report": fp32.to_dict()} if fp32 is not None else {}),
        tensorrt_violations=[str(v) for v in result.violations],
    )
    record_files(folder)
    return result


def run_export(recipe: Recipe):
    """Stage function for `qtool run`: writes <run>/export/model.onnx and model.fp32.onnx."""
    cfg = recipe.export.model_copy(update={"fp32_baseline": True})
    recipe = recipe.model_copy(update={"export": cfg})
    return export_checkpoint(
        default_export_source(recipe), recipe.stage_dir("export") / EXPORT_FILE, recipe
    )
