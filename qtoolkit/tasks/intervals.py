"""Uncertainty of accuracies, accuracy differences and speed-ups: percentile bootstraps.

A model's accuracy (any mean of per-example scores) gets its interval by resampling the
examples. Two models scored on the same examples are compared example by example: resampling the
examples (with replacement) and recomputing the difference gives its spread. A difference
whose 95% interval contains 0 is a tie. Latencies timed in the same interleaved rounds are
resampled by round in the same way; a speed-up whose interval contains 1 is a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "Interval",
    "agreement_interval",
    "mean_interval",
    "paired_bootstrap",
    "speedup_interval",
]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    level: float = 0.95

    @property
    def is_tie(self) -> bool:
        """True when the interval of a difference contains 0."""
        return self.low <= 0.0 <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def points(self, digits: int = 2) -> str:
        """A difference in points (x100) with its interval, e.g. '-0.25 [-0.70, +0.20]'."""
        v, lo, hi = (100.0 * x for x in (self.value, self.low, self.high))
        return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

    def percent(self, digits: int = 2) -> str:
        """A share in percent with its interval, e.g. '97.45% [96.80, 98.10]'."""
        v, lo, hi = (100.0 * x for x in (self.value, self.low, self.high))
        return f"{v:.{digits}f}% [{lo:.{digits}f}, {hi:.{digits}f}]"


def _resample_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    return values[idx].mean(axis=1)


def _percentile_interval(value: float, draws: np.ndarray, level: float) -> Interval:
    """`value` with the central `level` share of its bootstrap `draws` as the interval."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return Interval(float(value), float(low), float(high), level)


def mean_interval(
    scores: Sequence[float], samples: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Mean of per-example scores (1/0 for accuracy, or any per-example metric) with a
    percentile bootstrap interval: how far the figure could move on another sample of the same
    size."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"need a non-empty list of scores ({values.shape})")
    return _percentile_interval(values.mean(), _resample_means(values, samples, seed), level)


def paired_bootstrap(
    correct_a: Sequence[float],
    correct_b: Sequence[float],
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of `a - b` over paired per-example scores (1/0 for accuracy, or any per-example
    metric) with a percentile bootstrap interval."""
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length, non-empty score lists ({a.shape} vs {b.shape})")
    diff = a - b
    return _percentile_interval(diff.mean(), _resample_means(diff, samples, seed), level)


def agreement_interval(
    preds_a: Sequence[Any],
    preds_b: Sequence[Any],
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Share of identical predictions with a bootstrap interval."""
    if len(preds_a) != len(preds_b) or not preds_a:
        raise ValueError("need two equal-length, non-empty prediction lists")
    same = np.array([x == y for x, y in zip(preds_a, preds_b, strict=True)], dtype=np.float64)
    return _percentile_interval(same.mean(), _resample_means(same, samples, seed), level)


def speedup_interval(
    slow_s: Sequence[float],
    fast_s: Sequence[float],
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Speed-up `median(slow) / median(fast)` of two runners timed in the same interleaved
    rounds, with a percentile bootstrap interval that resamples whole rounds (both runners'
    times of a round together, so a round slowed by other work weighs on both sides)."""
    a = np.asarray(slow_s, dtype=np.float64)
    b = np.asarray(fast_s, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0 or (a <= 0).any() or (b <= 0).any():
        raise ValueError(f"need two equal-length lists of positive times ({a.shape} vs {b.shape})")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(samples, len(a)))
    ratios = np.median(a[idx], axis=1) / np.median(b[idx], axis=1)
    return _percentile_interval(np.median(a) / np.median(b), ratios, level)
