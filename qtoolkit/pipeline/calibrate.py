"""The calibrate stage: float checkpoint + calibration text -> calibrated quantized checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["CalibrateOutcome", "run_calibrate"]


@dataclass
class CalibrateOutcome:
    output_dir: Path
    num_samples: int
    seconds: float
    counts: dict[str, int]
    records: list[dict[str, Any]]
    unused: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def run_calibrate(recipe: Recipe) -> CalibrateOutcome:
    from qtoolkit import dist
    from qtoolkit.data import read_data_examples, tokenize_batches
    from qtoolkit.models import load_model
    from qtoolkit.pipeline.common import quant_source, resolve_device
    from qtoolkit.quant import amax_records, calibrate, insert_quantizers, save_quantized
    from qtoolkit.quant.calib.sharded import sharded_forward_loop

    if recipe.data.calib_file is None:
        raise QtoolError("no calibration data: set data.calib_file or pass --calib-file")
    device = resolve_device(recipe.calib.device)
    dist.init(device)  # under torchrun: each rank calibrates on a share of the batches
    examples = read_data_examples(recipe.data.calib_file, recipe.data, recipe.calib.num_samples)
    model_cfg, notices = quant_source(recipe)
    loaded = load_model(model_cfg, seed=recipe.seed)
    if loaded.newly_initialized:
        notices.append(
            f"{len(loaded.newly_initialized)} parameters are not in the checkpoint and were "
            f"initialised randomly (a fresh {recipe.model.task} head): "
            + ", ".join(loaded.newly_initialized[:4])
        )
    if len(examples) < recipe.calib.num_samples:
        notices.append(
            f"{recipe.data.calib_file} has {len(examples)} examples; "
            f"calib.num_samples asked for {recipe.calib.num_samples}"
        )
    model = loaded.model.to(device)
    report = insert_quantizers(model, recipe.quant)
    batches = tokenize_batches(
        loaded.tokenizer,
        examples,
        recipe.calib.batch_size,
        recipe.data.max_length,
        recipe.data.pad_to_max_length,
    )
    start = time.perf_counter()
    result = calibrate(model, sharded_forward_loop(batches, device), recipe.calib)
    seconds = time.perf_counter() - start
    out_dir = recipe.stage_dir("calibrated")
    if dist.is_main():  # every rank holds the same amax; one writes them
        save_quantized(
            model,
            loaded.tokenizer,
            out_dir,
            recipe.quant,
            info={
                "stage": "calibrated",
                "source_model": model_cfg.path,
                "calib": recipe.calib.model_dump(mode="json", exclude={"output_dir"}),
                "calib_file": str(recipe.data.calib_file),
                "max_length": recipe.data.max_length,
                "num_samples": len(examples),
                "calib_seconds": round(seconds, 3),
                "device": device,
                "unused_quantizers": result.unused,
            },
        )
    dist.barrier()  # the checkpoint exists before any rank goes on (QAT reads it)
    return CalibrateOutcome(
        output_dir=out_dir,
        num_samples=len(examples),
        seconds=seconds,
        counts=report.counts(),
        records=amax_records(model),
        unused=result.unused,
        notices=notices,
    )
