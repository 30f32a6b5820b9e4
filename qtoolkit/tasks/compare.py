"""One model against a reference on the same examples: the model's own metric, the metric
difference and the agreement, each with a bootstrap 95% interval (paired for the last two), and
how a table writes them.

A difference whose interval contains 0 is a tie: the two models cannot be told apart on this
split. Tasks provide `example_scores(data, predictions)` (per-example scores whose mean is the
primary metric as a fraction); a task without it (entity F1 is not a mean) gets the bare
difference, marked as having no interval.
"""

from __future__ import annotations

from typing import Any

from qtoolkit.tasks.intervals import Interval, agreement_interval, mean_interval, paired_bootstrap

__all__ = ["agreement_cell", "compare_predictions", "delta_cell", "example_scores"]


def example_scores(task, data, predictions) -> list[float] | None:
    """Per-example scores of `predictions` on `data`, or None when the task has none."""
    scorer = getattr(task, "example_scores", None)
    return None if scorer is None else scorer(data, predictions)


def _as_list(preds: Any, keys: list | None) -> list:
    return [preds.get(k) for k in keys] if keys is not None else list(preds)


def compare_predictions(
    task, data, predictions: Any, reference: Any, metric_delta: float | None = None
) -> dict[str, Any]:
    """{metric_interval, delta_points, delta, tie, agreement, agreement_interval} of
    `predictions` against `reference` (both on `data`); intervals are dicts in fractions
    (`metric_interval`: the mean per-example score of `predictions`, None without per-example
    scores). `metric_delta` (in the metric's units) is the fallback difference for a task
    without per-example scores."""
    keys = list(reference) if isinstance(reference, dict) else None
    agree = agreement_interval(_as_list(predictions, keys), _as_list(reference, keys))
    out: dict[str, Any] = {
        "agreement": agree.value,
        "agreement_interval": agree.to_dict(),
    }
    mine, theirs = example_scores(task, data, predictions), example_scores(task, data, reference)
    if mine is not None and theirs is not None:
        delta = paired_bootstrap(mine, theirs)
        out.update(delta_points=100.0 * delta.value, delta=delta.to_dict(), tie=delta.is_tie)
        out["metric_interval"] = mean_interval(mine).to_dict()
    else:
        out.update(
            metric_interval=None,
            delta_points=None if metric_delta is None else 100.0 * metric_delta,
            delta=None,
            tie=None,
        )
    return out


def _interval(d: dict[str, Any] | None) -> Interval | None:
    if not d:
        return None
    return Interval(d["value"], d["low"], d["high"], d.get("level", 0.95))


def delta_cell(row: dict[str, Any]) -> str:
    """'-0.25 [-0.70, +0.20] tie', '-1.30 [-2.00, -0.60]', or '-0.40 (no interval)'."""
    interval = _interval(row.get("delta"))
    if interval is not None:
        return interval.points() + (" tie" if interval.is_tie else "")
    if row.get("delta_points") is None:
        return ""
    return f"{row['delta_points']:+.2f} (no interval)"


def agreement_cell(row: dict[str, Any]) -> str:
    """'97.45% [96.80, 98.10]'."""
    interval = _interval(row.get("agreement_interval"))
    if interval is None:
        return f"{row['agreement']:.2%}" if row.get("agreement") is not None else ""
    return interval.percent()
