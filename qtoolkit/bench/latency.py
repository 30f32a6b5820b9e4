"""The timed loops: every backend at every batch x sequence shape, interleaved.

Per shape, each backend binds the shape's inputs and runs its warm-up; then the timed
iterations are split into rounds and the backends take turns, one chunk each per round, in an
order that rotates every round. Clock or thermal drift and other jobs on the machine therefore
land on every backend alike instead of on whichever ran last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qtoolkit.bench.inputs import Feeds
from qtoolkit.bench.stats import LatencyStats, summarize
from qtoolkit.errors import QtoolError

__all__ = [
    "MAX_ROUNDS",
    "GridRow",
    "chunks",
    "intra_op_threads",
    "rounds_for",
    "run_grid",
    "time_shape",
]

# Timed iterations are interleaved in at most this many rounds (one chunk per backend each).
MAX_ROUNDS = 10


@dataclass
class GridRow:
    name: str
    batch: int
    seq: int
    stats: LatencyStats | None = None
    skipped: str | None = None  # why this backend did not run at this shape

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"backend": self.name, "batch": self.batch, "seq": self.seq}
        return {**row, **(self.stats.to_dict() if self.stats else {"skipped": self.skipped})}


def rounds_for(iterations: int) -> int:
    return min(iterations, MAX_ROUNDS)


def chunks(iterations: int, rounds: int) -> list[int]:
    """`iterations` split into `rounds` near-equal positive chunks."""
    base, extra = divmod(iterations, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def time_shape(
    timers: Mapping[str, Any],
    feeds: Feeds,
    warmup: int,
    iterations: int,
    on_round: Callable[[], None] | None = None,
) -> dict[str, list[float] | str]:
    """Latencies (ms) per backend at one shape, or the reason a backend could not run it."""
    result: dict[str, list[float] | str] = {}
    ready = {}
    for name, timer in timers.items():
        try:
            timer.bind(feeds)
            timer.warmup(warmup)
        except QtoolError as exc:  # e.g. a shape outside a TensorRT engine's profile
            result[name] = str(exc)
            continue
        ready[name] = timer
        result[name] = []
    names = list(ready)
    for index, chunk in enumerate(chunks(iterations, rounds_for(iterations))):
        shift = index % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            result[name].extend(ready[name].measure(chunk))
        if on_round is not None:
            on_round()
    return result


def run_grid(
    timers: Mapping[str, Any],
    shapes: Sequence[tuple[int, int]],
    make_feeds: Callable[[int, int], Feeds],
    warmup: int,
    iterations: int,
    on_round: Callable[[str], None] | None = None,
) -> list[GridRow]:
    """One row per shape x backend (shape-major, backends in the order given)."""
    rows = []
    for batch, seq in shapes:
        status = f"{batch}x{seq}"
        tick = (lambda s=status: on_round(s)) if on_round is not None else None
        times = time_shape(timers, make_feeds(batch, seq), warmup, iterations, tick)
        for name in timers:
            value = times[name]
            if isinstance(value, str):
                rows.append(GridRow(name, batch, seq, skipped=value))
            else:
                rows.append(GridRow(name, batch, seq, stats=summarize(value, batch)))
    return rows


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op thread count for the block (ONNX Runtime gets it per session)."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
