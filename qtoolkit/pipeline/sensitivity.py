"""The sensitivity stage: which quantizer groups of a calibrated model cost the accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["SensitivityOutcome", "run_sensitivity"]


@dataclass
class SensitivityOutcome:
    metric: str
    fp32: float
    int8: float
    rows: list[dict[str, Any]]

    def summary(self) -> Any:
        """What `qtool sensitivity` prints: one table row per group left in float."""
        from rich.table import Table

        table = Table(title=f"{self.metric}: fp32 {self.fp32:.4f}, all INT8 {self.int8:.4f}")
        for col in ("left in float", "quantizers", self.metric, "recovered (points)"):
            table.add_column(col, justify="left" if col == "left in float" else "right")
        for row in self.rows:
            table.add_row(
                row["group"],
                str(row["quantizers"]),
                f"{row['metric']:.4f}",
                f"{row['recovered_points']:+.2f}",
            )
        return table

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "fp32": self.fp32, "int8": self.int8, "rows": self.rows}


def run_sensitivity(
    checkpoint: Path, recipe: Recipe, data_file: Path | None, limit: int | None, by: str
) -> SensitivityOutcome:
    from qtoolkit.pipeline.common import split_evaluator, stage_task
    from qtoolkit.quant import iter_quantizers, load_quantized
    from qtoolkit.quant.sensitivity import measure_sensitivity, quantizer_groups

    data_file = data_file or recipe.data.eval_file or recipe.data.test_file
    if data_file is None:
        raise QtoolError("no data: set data.eval_file or pass --data")
    ckpt = load_quantized(checkpoint)
    task_name = ckpt.manifest["task"]
    task = stage_task(recipe, task_name)
    evaluator = split_evaluator(
        recipe, task, ckpt.tokenizer, data_file, ckpt.model.config, limit=limit
    )
    metric = task.primary_metric

    def evaluate(model, label: str) -> float:
        return evaluator.metrics(model, label)[metric]

    int8 = evaluate(ckpt.model, "all INT8")
    quantizers = [q for _, q in iter_quantizers(ckpt.model) if not q._disabled]
    for q in quantizers:
        q.disable()
    fp32 = evaluate(ckpt.model, "fp32")
    for q in quantizers:
        q.enable()
    rows = measure_sensitivity(ckpt.model, evaluate, quantizer_groups(ckpt.model, by))
    for row in rows:
        row["recovered_points"] = 100.0 * (row["metric"] - int8)
    return SensitivityOutcome(metric, fp32, int8, rows)
