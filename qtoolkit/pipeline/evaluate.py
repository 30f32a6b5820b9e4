"""Evaluate a task on any target: fp32 checkpoint, quantized checkpoint, ONNX file (ORT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import Kind
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe
from qtoolkit.tasks.evaluation import agreement

__all__ = ["EvalOutcome", "agreement", "run_evaluate"]


@dataclass
class EvalOutcome:
    target: str
    backend: str
    task: str
    num_examples: int
    metrics: dict[str, float]
    seconds: float
    predictions: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": str(Kind.METRICS),
            "target": self.target,
            "backend": self.backend,
            "task": self.task,
            "num_examples": self.num_examples,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
            **self.extra,
            "predictions": self.predictions,
        }


def run_evaluate(
    target: str | Path,
    recipe: Recipe,
    data_file: str | Path | None = None,
    limit: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> EvalOutcome:
    from qtoolkit.pipeline.common import split_evaluator, stage_task
    from qtoolkit.runtime.targets import open_target

    data_file = data_file or recipe.data.test_file
    if data_file is None:
        raise QtoolError("no evaluation data: set data.test_file or pass --data")
    tgt = open_target(target, recipe, device, threads)
    task = stage_task(recipe, tgt.task_name)
    evaluator = split_evaluator(recipe, task, tgt.tokenizer, data_file, tgt.config, limit=limit)
    metrics, predictions, seconds = evaluator.run(tgt.runner, "evaluating")
    return EvalOutcome(
        target=str(target),
        backend=tgt.kind,
        task=tgt.task_name,
        num_examples=evaluator.num_examples,
        metrics=metrics,
        seconds=seconds,
        predictions=predictions,
        extra={"data": str(data_file)},
    )
