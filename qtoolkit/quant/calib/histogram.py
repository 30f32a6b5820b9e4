"""Histogram calibration of activations: collection and the percentile, mse and entropy rules.

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

import numpy as np
import torch

__all__ = ["HistogramCalibrator", "amax_percentile", "amax_mse", "amax_entropy"]


class HistogramCalibrator:
    """Collects a histogram of |x| whose range grows by exact doubling."""

    def __init__(self, num_bins: int = 2048, num_bits: int = 8, unsigned: bool = False):
        if num_bins % 2:
            raise ValueError("num_bins must be even")
        self.num_bins = num_bins
        self.num_bits = num_bits
        self.unsigned = unsigned
        self.hist: torch.Tensor | None = None
        self.range: float = 0.0
        self.top: float = 0.0  # how many values equal the current range exactly

    def reset(self) -> None:
        self.hist = None
        self.range = 0.0
        self.top = 0.0

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
        counts, edges = hist
        if method == "percentile":
            amax = amax_percentile(counts, edges, percentile)
        elif method == "mse":
            amax = amax_mse(counts, edges, self.num_bits, self.unsigned, start_bin, stride)
        elif method == "entropy":
            amax = amax_entropy(counts, edges, self.num_bits, self.unsigned, start_bin, stride)
        else:
            raise ValueError(f"unknown histogram method '{method}'")
        return torch.tensor(amax, dtype=torch.float32)


def amax_percentile(counts: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """Upper edge of the bin where the cumulative share of |x| reaches `percentile`."""
    if not 0 < percentile <= 100:
        raise ValueError("percentile must be in (0, 100]")
    cdf = np.cumsum(counts) / counts.sum()
    idx = int(np.searchsorted(cdf, percentile / 100.0 - 1e-12))
    return float(edges[min(idx, len(counts) - 1) + 1])


def _levels(num_bits: int, unsigned: bool) -> int:
    """Number of positive quantization steps, e.g. 127 for signed int8."""
    return 2 ** (num_bits - 1 + int(unsigned)) - 1


def amax_mse(
    counts: np.ndarray,
    edges: np.ndarray,
    num_bits: int = 8,
    unsigned: bool = False,
    start_bin: int = 128,
    stride: int = 1,
) -> float:
    """The candidate amax (a bin's upper edge) minimising the expected squared quantization error.

    Each bin's mass sits at its centre; for candidate amax `a` the error of a centre `c` is
    `c - min(round(c / s), L) * s` with `s = a / L`. All candidates are evaluated at once.
    """
    centers = torch.from_numpy((edges[1:] + edges[:-1]) / 2.0)
    weights = torch.from_numpy(np.asarray(counts, dtype=np.float64))
    cand_idx = torch.arange(start_bin, len(counts) + 1, stride)
    amaxes = torch.from_numpy(edges)[cand_idx]
    levels = _levels(num_bits, unsigned)
    errors = torch.empty(len(amaxes), dtype=torch.float64)
    # Chunked so that memory stays at a few MB for 2048 bins.
    for start in range(0, len(amaxes), 256):
        a = amaxes[start : start + 256, None]
        scale = a / levels
        q = torch.clamp(torch.round(centers[None, :] / scale), max=levels) * scale
        errors[start : start + 256] = ((q - centers[None, :]) ** 2 * weights[None, :]).sum(dim=1)
    return float(amaxes[int(torch.argmin(errors))])


def amax_entropy(
    counts: np.ndarray,
    edges: np.ndarray,
    num_bits: int = 8,
    unsigned: bool = False,
    start_bin: int = 128,
    stride: int = 1,
) -> float:
    """TensorRT's KL-divergence rule: the threshold whose quantized distribution is closest to the
    clipped reference distribution.

    For each candidate threshold of `i` bins, the reference P is `counts[:i]` with the clipped tail
    added to its last bin. Q merges the `i` bins into `2**(num_bits-1)` groups and spreads each
    group's mass evenly over the group's non-empty bins. The threshold with the smallest KL(P||Q)
    wins (the largest one among ties).
    """
    counts = np.asarray(counts, dtype=np.float64).copy()
    nbins = len(counts)
    if nbins > 1:
        counts[0] = counts[1]  # bin 0 holds the exact zeros (padding, ReLU); TensorRT drops them
    nlevels = 2 ** (num_bits - 1 + int(unsigned))
    tail = np.cumsum(counts[::-1])[::-1]  # tail[i] = counts[i:].sum()
    best_i, best_kl = nbins, np.inf
    for i in range(max(start_bin, nlevels), nbins + 1, stride):
        p = counts[:i].copy()
        if i < nbins:
            p[-1] += tail[i]
        ref = counts[:i]
        group = (np.arange(i) * nlevels) // i  # which quantized level each bin falls in
        nonzero = ref != 0
        group_mass = np.bincount(group, weights=ref, minlength=nlevels)
        group_nonzero = np.bincount(group, weights=nonzero.astype(np.float64), minlength=nlevels)
        q = np.where(nonzero, group_mass[group] / np.maximum(group_nonzero[group], 1.0), 0.0)
        p_sum, q_sum = p.sum(), q.sum()
        if p_sum == 0 or q_sum == 0:
            continue
        p_n, q_n = p / p_sum, q / q_sum
        mask = p_n > 0
        # Where P > 0 but Q == 0 (a clipped tail landing on an empty bin), KL is infinite.
        if np.any(q_n[mask] == 0):
            continue
        kl = float(np.sum(p_n[mask] * np.log(p_n[mask] / q_n[mask])))
        if kl <= best_kl:
            best_i, best_kl = i, kl
    return float(edges[best_i])
