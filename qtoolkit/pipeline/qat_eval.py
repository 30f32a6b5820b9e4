"""QAT's evaluations on data.eval_file: the task metrics plus agreement with the fp32 model (with
its 95% bootstrap interval) and the mean KL of the outputs to fp32's.

The fp32 model's predictions and outputs on the split are computed once; every evaluation during
training compares with them. Selecting on agreement (ties broken by the lower KL) keeps the step
that is the most faithful copy of fp32, not the one that learned the task furthest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FidelityEvaluator", "eval_line", "rank_by"]


def _paired(a: Any, b: Any) -> tuple[list, list]:
    """Two prediction collections as aligned lists (dicts, e.g. QA answers, by key)."""
    if isinstance(a, dict):
        keys = list(a)
        return [a[k] for k in keys], [b.get(k) for k in keys]
    return list(a), list(b)


@dataclass
class FidelityEvaluator:
    """Callable `evaluate(model) -> metrics` for the training loop."""

    evaluator: Any  # pipeline.common.Evaluator on the dev split
    reference_preds: Any
    reference_outputs: list[dict]

    @classmethod
    def against(cls, evaluator, fp32_model) -> FidelityEvaluator:
        outputs: list[dict] = []
        _, preds, _ = evaluator.run(fp32_model, "fp32 (eval file)", sink=outputs)
        return cls(evaluator, preds, outputs)

    def __call__(self, model) -> dict[str, float]:
        from qtoolkit.tasks.evaluation import output_kl
        from qtoolkit.tasks.intervals import agreement_interval

        outputs: list[dict] = []
        metrics, preds, _ = self.evaluator.run(model, "eval", sink=outputs)
        interval = agreement_interval(*_paired(preds, self.reference_preds))
        return {
            **metrics,
            "agreement": interval.value,
            "agreement_low": interval.low,
            "agreement_high": interval.high,
            "kl": output_kl(outputs, self.reference_outputs),
        }


def rank_by(select: str, primary_metric: str):
    """The key evaluations are compared by, higher first."""
    if select == "agreement":
        return lambda m: (m["agreement"], -m["kl"])
    return lambda m: (m[primary_metric],)


def eval_line(record: dict[str, Any], primary_metric: str) -> str:
    """One evaluation, e.g. 'step 94 (epoch 1): loss 0.0123, agreement 98.70% [97.90, 99.40],
    kl 0.0021, accuracy 0.8620 (131s)'."""
    where = "start (PTQ)" if record["step"] == 0 else f"step {record['step']}"
    if record["step"]:
        where += f" (epoch {record['epoch']})"
    parts = [] if record.get("loss") is None else [f"loss {record['loss']:.4f}"]
    if "agreement" in record:
        parts.append(
            f"agreement {100 * record['agreement']:.2f}% "
            f"[{100 * record['agreement_low']:.2f}, {100 * record['agreement_high']:.2f}]"
        )
        parts.append(f"kl {record['kl']:.4g}")
    parts.append(f"{primary_metric} {record[primary_metric]:.4f}")
    return f"{where}: {', '.join(parts)} ({record['seconds']:.0f}s)"
