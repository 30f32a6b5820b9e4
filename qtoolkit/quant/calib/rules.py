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
