"""Latency statistics: percentiles, throughput in sequences per second."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["P99_MIN_ITERATIONS", "LatencyStats", "percentile", "summarize"]

# Below this many timed iterations the 99th percentile is (close to) the maximum, a single
# outlier, so it is not reported.
P99_MIN_ITERATIONS = 100


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) with linear interpolation between order statistics
    (numpy's default method), so p50 of an even count is the mean of the middle pair."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed iterations of one backend at one batch x sequence shape."""

    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float | None  # None below P99_MIN_ITERATIONS timed iterations
    mean_ms: float
    min_ms: float
    max_ms: float
    # Sequences per second over the whole timed run: batch * iterations / total time.
    throughput: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def summarize(latencies_ms: Sequence[float], batch_size: int) -> LatencyStats:
    """Percentiles of per-iteration latencies and the throughput they imply."""
    if not latencies_ms:
        raise ValueError("no timed iterations")
    total_ms = math.fsum(latencies_ms)
    return LatencyStats(
        iterations=len(latencies_ms),
        p50_ms=percentile(latencies_ms, 50),
        p90_ms=percentile(latencies_ms, 90),
        p99_ms=(percentile(latencies_ms, 99) if len(latencies_ms) >= P99_MIN_ITERATIONS else None),
        mean_ms=total_ms / len(latencies_ms),
        min_ms=min(latencies_ms),
        max_ms=max(latencies_ms),
        throughput=batch_size * len(latencies_ms) * 1000.0 / total_ms if total_ms > 0 else 0.0,
    )
