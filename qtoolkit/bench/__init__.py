"""Latency, throughput and accuracy of a model on several backends, with reports.

`targets` (what runs where), `stats` (percentiles), `latency` (interleaved timed loops),
`backends` (opening a target), `report` and `plot` (outputs). Importing this package loads no
torch, onnxruntime or matplotlib; the stage is `qtoolkit.pipeline.benchmark.run_benchmark`.
"""

from qtoolkit.bench.stats import LatencyStats, percentile, summarize
from qtoolkit.bench.targets import BACKENDS, BackendSpec, BenchTarget, parse_target, resolve_targets

__all__ = [
    "BACKENDS",
    "BackendSpec",
    "BenchTarget",
    "LatencyStats",
    "parse_target",
    "percentile",
    "resolve_targets",
    "summarize",
]
