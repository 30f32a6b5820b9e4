"""Histogram calibration of activations: collection, and amax from a registered rule.

Why our own rather than pytorch-quantization's `HistogramCalibrator`:
* its mse rule moves the histogram to CUDA unconditionally, so it cannot run on a CPU machine;
* its torch collector re-bins the running histogram when the range grows, which smears counts;
  here the range doubles and adjacent bins are merged pairwise, which is exact;
* its entropy rule is a Python loop over bins; here the inner work is vectorised.

`HistogramCalibrator` follows pytorch-quantization's calibrator protocol (`collect`, `reset`,
`compute_amax`), so it plugs into a `TensorQuantizer` as its `_calibrator`.

Histograms are of |x| over [0, range], `num_bins` equal bins; `edges[i]` is the lower edge of
bin i and `edges[-1]` the range. Bins are half-open [lo, hi) except the last, which also holds x
equal to the range. Values exactly at the current range are counted apart until the range
doubles, when they move to the bin that starts at them: so the histogram is the one a single
`histc` over the final range would give, whatever order the data came in. That makes statistics
collected on several ranks from the same starting range add up exactly (`grow_to`, then a sum).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

# The rules live in rules.py; re-exported here, where they always were.
from qtoolkit.quant.calib.rules import amax_entropy, amax_mse, amax_percentile

__all__ = ["HistogramCalibrator", "amax_percentile", "amax_mse", "amax_entropy"]


class HistogramCalibrator:
    """Collects a histogram of |x| whose range grows by exact doubling, and the largest |x|
    (so one pass serves the max calibrator too)."""

    def __init__(self, num_bins: int = 2048, num_bits: int = 8, unsigned: bool = False):
        if num_bins % 2:
            raise ValueError("num_bins must be even")
        self.num_bins = num_bins
        self.num_bits = num_bits
        self.unsigned = unsigned
        self.hist: torch.Tensor | None = None
        self.range: float = 0.0
        self.nonfinite = False  # saw NaN or inf: no amax can be derived (load_amax refuses)
        self.top: float = 0.0  # how many values equal the current range exactly
        self.max: float = 0.0  # the largest |x| seen: the max calibrator's amax, exactly

    def reset(self) -> None:
        self.hist = None
        self.range = 0.0
        self.nonfinite = False
        self.top = 0.0
        self.max = 0.0

    def start(self, range_: float, device: torch.device | str = "cpu") -> None:
        """Begin with an empty histogram over [0, range_] (a range agreed with other ranks)."""
        self.hist = torch.zeros(self.num_bins, dtype=torch.float64, device=device)
        self.range = float(range_)
        self.top = 0.0

    def _double(self) -> None:
        merged = self.hist.view(-1, 2).sum(dim=1)
        self.hist = torch.cat([merged, torch.zeros_like(merged)])
        self.hist[self.num_bins // 2] += self.top  # the old range is the new bin's lower edge
        self.top = 0.0
        self.range *= 2.0

    def grow_to(self, range_: float) -> None:
        """Double the range until it is `range_`; refuses a range not reachable by doubling."""
        if self.hist is None:
            raise ValueError("nothing collected yet: use start()")
        while self.range < range_:
            self._double()
        if self.range != range_:
            raise ValueError(f"range {range_} is not this histogram's range times a power of 2")

    @torch.no_grad()
    def collect(self, x: torch.Tensor) -> None:
        x = x.detach().abs().float().flatten()
        if x.numel() == 0:
            return
        x_max = float(x.max())
        if not math.isfinite(x_max):
            self.nonfinite = True
            return
        self.max = max(self.max, x_max)
        if self.hist is None:
            self.start(x_max if x_max > 0 else 1e-12, x.device)
        while x_max > self.range:
            self._double()
        at_top = x == self.range
        n_top = int(at_top.sum())
        if n_top:
            self.top += n_top
            x = x[~at_top]
        self.hist += torch.histc(x, bins=self.num_bins, min=0.0, max=self.range).double()

    def histogram(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(counts, edges) as numpy arrays, or None if nothing was collected."""
        if self.hist is None:
            return None
        edges = np.linspace(0.0, self.range, self.num_bins + 1)
        counts = self.hist.cpu().numpy().copy()
        counts[-1] += self.top
        return counts, edges

    def compute_amax(
        self,
        method: str,
        *,
        percentile: float = 99.99,
        start_bin: int = 128,
        stride: int = 1,
    ) -> torch.Tensor | None:
        hist = self.histogram()
        if hist is None:
            return None
        from qtoolkit.quant.calib.registry import CALIBRATORS

        spec = CALIBRATORS.get(method)
        if spec is None or spec.rule is None:
            raise ValueError(f"unknown histogram method '{method}'")
        counts, edges = hist
        settings = SimpleNamespace(percentile=percentile, start_bin=start_bin, stride=stride)
        amax = spec.rule(counts, edges, settings, self.num_bits, self.unsigned)
        return torch.tensor(amax, dtype=torch.float32)
