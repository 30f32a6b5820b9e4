"""The calibrate stage: float checkpoint + calibration text -> calibrated quantized checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import Kind, check_output_dir
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import CalibConfig, Recipe

__all__ = ["CalibrateOutcome", "amax_summary", "quantizer_group", "run_calibrate"]


@dataclass
class CalibrateOutcome:
    output_dir: Path
    num_samples: int
    seconds: float
    counts: dict[str, int]
    records: list[dict[str, Any]]
    unused: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def summary(self, calib: CalibConfig | None = None) -> Any:
        """What `qtool calibrate` prints: amax ranges per quantizer group, counts and timing.
        `calib` (the recipe's) names the method in the text."""
        from rich.console import Group

        from qtoolkit.ui import note

        per_100 = self.seconds / self.num_samples * 100
        what = ""
        if calib is not None:
            label = calib.method + (f" {calib.percentile}" if calib.method == "percentile" else "")
            what = f" ({label})"
        lines: list[Any] = [
            amax_summary(self.records),
            f"calibrated {sum(1 for x in self.records if x['enabled'])} quantizers{what} on "
            f"{self.num_samples} samples in {self.seconds:.1f}s ({per_100:.1f}s per 100 samples)",
        ]
        if self.unused:
            lines.append(
                note(
                    f"{len(self.unused)} quantizers saw no data and stay in float: "
                    f"{self.unused[:3]}"
                )
            )
        lines.append(f"wrote {self.output_dir} (amax table: {self.output_dir / 'amax.md'})")
        return Group(*lines)


def run_calibrate(recipe: Recipe) -> CalibrateOutcome:
    from qtoolkit import dist
    from qtoolkit.models import load_model
    from qtoolkit.models.loading import check_max_length
    from qtoolkit.pipeline.common import quant_source, resolve_device
    from qtoolkit.quant import amax_records, calibrate, insert_quantizers, save_quantized
    from qtoolkit.quant.bias_correction import correct_from_config
    from qtoolkit.quant.calib.sharded import sharded_forward_loop
    from qtoolkit.quant.smoothquant import smooth_from_config
    from qtoolkit.tasks.inputs import model_input_batches

    if recipe.data.calib_file is None:
        raise QtoolError("no calibration data: set data.calib_file or pass --calib-file")
    model_cfg, notices = quant_source(recipe)
    out_dir = recipe.stage_dir("calibrated")
    # Before any work: the output must be replaceable and hold none of the inputs.
    inputs = (model_cfg.path, model_cfg.tokenizer, recipe.data.calib_file)
    check_output_dir(out_dir, Kind.QUANTIZED, inputs)
    device = resolve_device(recipe.calib.device)
    dist.init(device)  # under torchrun: each rank calibrates on a share of the batches
    loaded = load_model(model_cfg, seed=recipe.seed)
    if loaded.newly_initialized:
        notices.append(
            f"{len(loaded.newly_initialized)} parameters are not in the checkpoint and were "
            f"initialised randomly (a fresh {recipe.model.task} head): "
            + ", ".join(loaded.newly_initialized[:4])
        )
    check_max_length(recipe.data.max_length, loaded.model.config)
    batches, num_examples = model_input_batches(
        recipe.model.task,
        loaded.tokenizer,
        recipe.data.calib_file,
        recipe.data,
        recipe.calib.num_samples,
        recipe.calib.batch_size,
        recipe.data.pad_to_max_length,
    )
    if num_examples < recipe.calib.num_samples:
        notices.append(
            f"{recipe.data.calib_file} has {num_examples} examples; "
            f"calib.num_samples asked for {recipe.calib.num_samples}"
        )
    model = loaded.model.to(device)
    report = insert_quantizers(model, recipe.quant)
    start = time.perf_counter()
    loop = sharded_forward_loop(batches, device)
    smoothed = smooth_from_config(model, recipe.quant, loop)  # quant.smoothquant, if set
    result = calibrate(model, loop, recipe.calib)
    correct_from_config(model, recipe.calib, loop)  # calib.bias_correction, if set
    seconds = time.perf_counter() - start
    if dist.is_main():  # every rank holds the same amax; one writes them
        save_quantized(
            model,
            loaded.tokenizer,
            out_dir,
            recipe.quant,
            inputs=inputs,
            info={
                "stage": "calibrated",
                "source_model": model_cfg.path,
                "calib": recipe.calib.model_dump(mode="json", exclude={"output_dir"}),
                "calib_file": str(recipe.data.calib_file),
                "max_length": recipe.data.max_length,
                "num_samples": num_examples,
                "calib_seconds": round(seconds, 3),
                "device": device,
                "unused_quantizers": result.unused,
                "smoothquant_sites": len(smoothed),
            },
        )
    dist.barrier()  # the checkpoint exists before any rank goes on (QAT reads it)
    return CalibrateOutcome(
        output_dir=out_dir,
        num_samples=num_examples,
        seconds=seconds,
        counts=report.counts(),
        records=amax_records(model),
        unused=result.unused,
        notices=notices,
    )


def quantizer_group(name: str) -> str:
    """The summary-table group of a quantizer, from its name."""
    from qtoolkit.quant.roles import role_of

    return role_of(name).label


def amax_summary(records: list[dict[str, Any]]) -> Any:
    """A rich table: per quantizer group, how many there are, how many are off, amax spread."""
    import statistics

    from rich.table import Table

    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(quantizer_group(rec["name"]), []).append(rec)
    table = Table(title="quantizers")
    for col in ("group", "count", "off", "amax min", "amax median", "amax max"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for group, recs in groups.items():
        values = [v for r in recs if r["amax"] is not None for v in (r["amax_min"], r["amax_max"])]
        off = sum(1 for r in recs if not r["enabled"])
        if values:
            cells = (f"{min(values):.4g}", f"{statistics.median(values):.4g}", f"{max(values):.4g}")
        else:
            cells = ("-", "-", "-")
        table.add_row(group, str(len(recs)), str(off), *cells)
    return table
