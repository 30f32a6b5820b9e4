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
    from qtoolkit.pipeline.evaluate import _task_options, evaluate_runner, label_map_for
    from qtoolkit.quant import iter_quantizers, load_quantized
    from qtoolkit.quant.sensitivity import measure_sensitivity, quantizer_groups
    from qtoolkit.runtime import TorchRunner
    from qtoolkit.tasks import get_task

    data_file = data_file or recipe.data.eval_file or recipe.data.test_file
    if data_file is None:
        raise QtoolError("no data: set data.eval_file or pass --data")
    ckpt = load_quantized(checkpoint)
    task_name = ckpt.manifest["task"]
    task = get_task(task_name, **_task_options(task_name, recipe))
    examples = task.read(data_file, recipe.data, limit)
    data = task.encode(
        ckpt.tokenizer,
        examples,
        recipe.data.max_length,
        label_map_for(task, examples, ckpt.model.config),
    )
    metric = task.primary_metric

    def evaluate(model, label: str) -> float:
        runner = TorchRunner(model, task.output_names)
        metrics, _ = evaluate_runner(runner, task, data, recipe.data.eval_batch_size, label)
        return metrics[metric]

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
