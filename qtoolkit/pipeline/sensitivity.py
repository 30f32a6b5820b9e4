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
    ranked_on: str = ""
    num_examples: int = 0

    def summary(self) -> Any:
        """What `qtool sensitivity` prints: one table row per group left in float."""
        from rich.table import Table

        table = Table(
            title=f"{self.metric} on {self.ranked_on} ({self.num_examples} examples): "
            f"fp32 {self.fp32:.4f}, all INT8 {self.int8:.4f}"
        )
        for col in ("left in float", "quantizers", self.metric, "recovered (points, 95% CI)"):
            table.add_column(col, justify="left" if col == "left in float" else "right")
        for row in self.rows:
            table.add_row(
                row["group"],
                str(row["quantizers"]),
                f"{row['metric']:.4f}",
                _recovered_cell(row),
            )
        return table

    def to_json(self) -> dict[str, Any]:
        from qtoolkit.artifacts import Kind
        from qtoolkit.bench.machine import machine_info

        return {
            "format": str(Kind.METRICS),  # so a later `-o` may replace it (and nothing else)
            "metric": self.metric,
            "ranked_on": self.ranked_on,
            "num_examples": self.num_examples,
            "interval": "paired bootstrap against all-INT8 over the examples, 95%",
            "fp32": self.fp32,
            "int8": self.int8,
            "rows": self.rows,
            "machine": machine_info(),
        }


def _recovered_cell(row: dict[str, Any]) -> str:
    from qtoolkit.tasks.compare import delta_cell

    return delta_cell({"delta": row.get("recovered"), "delta_points": row["recovered_points"]})


def run_sensitivity(
    checkpoint: Path, recipe: Recipe, data_file: Path | None, limit: int | None, by: str
) -> SensitivityOutcome:
    from qtoolkit.pipeline.common import split_evaluator, stage_task
    from qtoolkit.quant import iter_quantizers, load_quantized
    from qtoolkit.quant.sensitivity import measure_sensitivity, quantizer_groups
    from qtoolkit.tasks.compare import example_scores
    from qtoolkit.tasks.intervals import paired_bootstrap

    # Ranking chooses what to leave in float, so it runs on the dev split, never on test.
    data_file = data_file or recipe.data.eval_file
    if data_file is None:
        raise QtoolError(
            "sensitivity ranks on the dev split: set data.eval_file or pass --data "
            "(data.test_file is only for reporting)"
        )
    ckpt = load_quantized(checkpoint)
    task_name = ckpt.manifest["task"]
    task = stage_task(recipe, task_name)
    evaluator = split_evaluator(
        recipe, task, ckpt.tokenizer, data_file, ckpt.model.config, limit=limit
    )
    metric = task.primary_metric

    scores: dict[str, list[float] | None] = {}

    def evaluate(model, label: str) -> float:
        metrics, preds, _ = evaluator.run(model, label)
        scores[label] = example_scores(task, evaluator.data, preds)
        return metrics[metric]

    int8 = evaluate(ckpt.model, "all INT8")
    quantizers = [q for _, q in iter_quantizers(ckpt.model) if not q._disabled]
    for q in quantizers:
        q.disable()
    fp32 = evaluate(ckpt.model, "fp32")
    for q in quantizers:
        q.enable()
    rows = measure_sensitivity(ckpt.model, evaluate, quantizer_groups(ckpt.model, by))
    base = scores["all INT8"]
    for row in rows:
        row["recovered_points"] = 100.0 * (row["metric"] - int8)
        mine = scores.get(row["group"])
        if base is not None and mine is not None:
            interval = paired_bootstrap(mine, base)
            row["recovered"] = interval.to_dict()
            row["tie"] = interval.is_tie
    return SensitivityOutcome(metric, fp32, int8, rows, str(data_file), evaluator.num_examples)
