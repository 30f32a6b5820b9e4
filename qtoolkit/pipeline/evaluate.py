"""Evaluate a task on any target: fp32 or quantized checkpoint (PyTorch), ONNX file (ONNX Runtime
or OpenVINO), OpenVINO IR, TensorRT engine."""

from __future__ import annotations

import json
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

    def compare_with(self, metrics_json: Path) -> float:
        """Prediction agreement with another evaluate run's metrics JSON; kept in the JSON."""
        if not metrics_json.is_file():
            raise QtoolError(f"comparison file not found: {metrics_json}")
        try:
            other = json.loads(metrics_json.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise QtoolError(
                f"{metrics_json}: not a metrics JSON (write one with qtool evaluate -o)"
            ) from None
        if not isinstance(other, dict) or other.get("predictions") is None:
            raise QtoolError(f"{metrics_json}: has no predictions to compare with")
        self.extra["agreement"] = agreement(self.predictions, other["predictions"])
        self.extra["compared_to"] = str(metrics_json)
        return self.extra["agreement"]

    def summary(self) -> str:
        """What `qtool evaluate` prints: metrics on one line (and agreement if compared)."""
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        runs = self.extra.get("runs_as") or {}
        how = f" {runs['precision']}" if runs.get("precision") else ""
        if runs.get("inference_precision"):
            how += f" (inference precision {runs['inference_precision']})"
        line = f"{self.backend}{how} {self.task} on {self.num_examples} examples: {metrics}"
        if "agreement" in self.extra:
            other = Path(self.extra["compared_to"]).name
            line += f"; agreement with {other} {self.extra['agreement']:.2%}"
        return line + f" ({self.seconds:.1f}s)"


def run_evaluate(
    target: str | Path,
    recipe: Recipe,
    data_file: str | Path | None = None,
    limit: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    runtime: str | None = None,
) -> EvalOutcome:
    """Score `target` on `runtime` (default: the one its kind runs on; an ONNX file can also
    run on `openvino`, in OpenVINO's default precision)."""
    from qtoolkit.pipeline.common import split_evaluator, stage_task
    from qtoolkit.runtime.runner import describe
    from qtoolkit.runtime.targets import RuntimeOptions, open_target

    data_file = data_file or recipe.data.test_file
    if data_file is None:
        raise QtoolError("no evaluation data: set data.test_file or pass --data")
    options = RuntimeOptions(threads=threads, hint=recipe.bench.performance_hint)
    tgt = open_target(target, recipe, device, runtime=runtime, options=options)
    task = stage_task(recipe, tgt.task_name)
    evaluator = split_evaluator(recipe, task, tgt.tokenizer, data_file, tgt.config, limit=limit)
    try:
        metrics, predictions, seconds = evaluator.run(tgt.runner, "evaluating")
    except QtoolError as exc:  # e.g. non-finite logits: say which model
        raise QtoolError(f"{target}: {exc}") from None
    return EvalOutcome(
        target=str(target),
        backend=tgt.kind,
        task=tgt.task_name,
        num_examples=evaluator.num_examples,
        metrics=metrics,
        seconds=seconds,
        predictions=predictions,
        extra={"data": str(data_file), "runs_as": describe(tgt.runner)},
    )
