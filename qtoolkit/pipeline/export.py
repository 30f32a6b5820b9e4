"""The export stage: quantized checkpoint -> model.onnx (+ model.fp32.onnx) in a folder that
also holds the tokenizer and config, so `qtool evaluate` and `qtool benchmark` can read it."""

from __future__ import annotations

import json
from pathlib import Path

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["default_export_source", "run_export", "export_checkpoint"]


def default_export_source(recipe: Recipe) -> Path:
    """The recipe's QAT checkpoint if `qtool qat` has run, else its calibrated one."""
    for stage in ("qat", "calibrated"):
        folder = recipe.stage_dir(stage)
        if (folder / "qtoolkit.json").is_file():
            return folder
    raise QtoolError(
        f"nothing to export: neither {recipe.stage_dir('qat')} nor "
        f"{recipe.stage_dir('calibrated')} exists (run qtool calibrate or qtool qat first)"
    )


def export_checkpoint(checkpoint: Path, out_path: Path, recipe: Recipe):
    """Export `checkpoint` to `out_path`; the sample batches are data.calib_file's sentences
    tokenized with the checkpoint's own tokenizer."""
    from qtoolkit import __version__
    from qtoolkit.export import export_onnx
    from qtoolkit.quant import load_quantized
    from qtoolkit.quant.checkpoint import read_manifest
    from qtoolkit.tasks.inputs import model_input_batches

    read_manifest(checkpoint)  # a wrong checkpoint path is reported before anything else
    data_file = recipe.data.calib_file
    if data_file is None:
        raise QtoolError("export validates on real text: set data.calib_file or pass --calib-file")
    ckpt = load_quantized(checkpoint)
    batches, _ = model_input_batches(
        ckpt.manifest["task"], ckpt.tokenizer, data_file, recipe.data, recipe.export.num_samples, 16
    )
    result = export_onnx(ckpt, out_path, recipe.export, batches)
    folder = Path(out_path).parent
    ckpt.model.config.save_pretrained(folder)
    ckpt.tokenizer.save_pretrained(folder)
    manifest = {
        "format": "qtoolkit-onnx",
        "qtoolkit_version": __version__,
        "task": ckpt.manifest["task"],
        "architecture": ckpt.manifest["architecture"],
        "source_checkpoint": str(checkpoint),
        "onnx": Path(out_path).name,
        "validation": result.validation.summary(),
        "tensorrt_violations": [str(v) for v in result.violations],
    }
    (folder / "qtoolkit.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def run_export(recipe: Recipe):
    """Stage function for `qtool run`: writes <run>/export/model.onnx and model.fp32.onnx."""
    cfg = recipe.export.model_copy(update={"fp32_baseline": True})
    recipe = recipe.model_copy(update={"export": cfg})
    return export_checkpoint(
        default_export_source(recipe), recipe.stage_dir("export") / "model.onnx", recipe
    )
