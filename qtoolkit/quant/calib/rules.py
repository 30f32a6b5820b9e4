"""Histogram rules: an |x| histogram in, an amax out. Pure numpy/torch, no qtoolkit state.

`counts[i]` is the number of values in bin i; `edges[i]` its lower edge and `edges[-1]` the
range. Each rule is registered by name in `registry.py`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["amax_entropy", "amax_mse", "amax_percentile"]


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


def _plogp(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


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

    Every candidate is scored at once from prefix sums: with `P = sum p` (the whole mass) and
    `C = counts[:i].sum()` (Q's mass), `KL = sum(p log p)/P - log P - sum(p log q)/P + log C`,
    and `sum(p log q)` is `sum_g M_g log(M_g / N_g)` over the groups (mass M_g over N_g
    non-empty bins) plus the clipped tail times log q of the last bin. A clipped tail on an
    empty last bin makes KL infinite (TensorRT skips that threshold).
    """
    c = np.asarray(counts, dtype=np.float64).copy()
    nbins = len(c)
    if nbins > 1:
        c[0] = c[1]  # bin 0 holds the exact zeros (padding, ReLU); TensorRT drops them
    nlevels = 2 ** (num_bits - 1 + int(unsigned))
    lengths = np.arange(max(start_bin, nlevels), nbins + 1, stride, dtype=np.int64)
    total = c.sum()
    if len(lengths) == 0 or total <= 0:
        return float(edges[nbins])
    zero = np.zeros(1)
    mass = np.concatenate([zero, np.cumsum(c)])  # mass[k] = c[:k].sum()
    filled = np.concatenate([zero, np.cumsum(c != 0)])
    plogp = np.concatenate([zero, np.cumsum(_plogp(c))])
    tail = total - mass[lengths]  # clipped into the last bin
    last = c[lengths - 1] + tail
    sum_plogp = plogp[lengths - 1] + _plogp(last)
    # Group g of a threshold i holds bins [ceil(g i / L), ceil((g + 1) i / L)).
    g = np.arange(nlevels + 1, dtype=np.int64)
    bounds = (g[None, :] * lengths[:, None] + nlevels - 1) // nlevels
    group_mass = mass[bounds[:, 1:]] - mass[bounds[:, :-1]]
    group_filled = filled[bounds[:, 1:]] - filled[bounds[:, :-1]]
    level = np.where(group_mass > 0, group_mass / np.maximum(group_filled, 1.0), 1.0)
    sum_plogq = (group_mass * np.log(level)).sum(axis=1)
    last_q = level[:, -1]
    sum_plogq += tail * np.log(last_q)
    q_mass = mass[lengths]
    with np.errstate(divide="ignore"):
        kl = sum_plogp / total - np.log(total) - sum_plogq / total + np.log(q_mass)
    impossible = ((c[lengths - 1] == 0) & (tail > 0)) | (q_mass == 0)
    kl = np.where(impossible, np.inf, kl)
    finite = np.isfinite(kl)
    if not finite.any():
        return float(edges[nbins])
    best = np.flatnonzero(kl <= kl[finite].min() * (1 + 1e-12) + 1e-15).max()
    return float(edges[lengths[best]])
