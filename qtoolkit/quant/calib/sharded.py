"""Calibration over several ranks: each runs a share of the batches, then the statistics merge.

The result is the amax a single process computes over all the batches:
* whole batches are dealt round-robin (rank r runs batches r, r + N, ...), so every batch is
  tokenized and padded exactly as in one process and the union of the values seen is the same;
* max statistics are max-reduced;
* histograms need one starting range everywhere, since ranges only ever double. A single process
  starts at the first batch's max, so rank 0 runs batch 0 first and hands each quantizer's range
  to the other ranks, which start from it. At the end the ranks agree on the largest range (an
  all-reduce max), grow their histograms to it by exact pairwise merges and sum them.
Every rank ends with the same statistics, so `load_amax` gives the same amax on each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from qtoolkit import dist
from qtoolkit.errors import QtoolError
from qtoolkit.quant.calib.histogram import HistogramCalibrator

__all__ = ["reduce_statistics", "share_start_ranges", "sharded_forward_loop"]


def _calibrators(model: nn.Module, kind: type) -> list[tuple[str, object]]:
    from qtoolkit.quant.insert import iter_quantizers

    found = []
    for name, quantizer in iter_quantizers(model):  # the same order on every rank
        calibrator = getattr(quantizer, "_calibrator", None)
        if isinstance(calibrator, kind) and quantizer._if_calib:
            found.append((name, calibrator))
    return found


def share_start_ranges(model: nn.Module) -> None:
    """Give every rank's histograms the starting range rank 0's histograms have (collective)."""
    hists = _calibrators(model, HistogramCalibrator)
    if dist.world_size() == 1 or not hists:
        return
    ranges = dist.broadcast_object([c.range if c.hist is not None else None for _, c in hists])
    if dist.is_main():
        return
    device = next(model.parameters()).device
    for (_, calibrator), start in zip(hists, ranges, strict=True):
        if start is not None:
            calibrator.start(start, device)


def reduce_statistics(model: nn.Module) -> None:
    """Merge every rank's collected statistics into each rank's calibrators (collective)."""
    from pytorch_quantization.calib import MaxCalibrator

    if dist.world_size() == 1:
        return
    maxes = _calibrators(model, MaxCalibrator)
    if maxes:
        gathered = dist.all_gather_object(
            [None if c._calib_amax is None else c._calib_amax.cpu() for _, c in maxes]
        )
        for i, (_, calibrator) in enumerate(maxes):
            seen = [rank_amax[i] for rank_amax in gathered if rank_amax[i] is not None]
            if seen:
                amax = torch.stack(seen).amax(dim=0)
                device = next(model.parameters()).device
                calibrator._calib_amax = amax.to(device)
    hists = _calibrators(model, HistogramCalibrator)
    if not hists:
        return
    device = next(model.parameters()).device
    ranges = torch.tensor(
        [c.range if c.hist is not None else 0.0 for _, c in hists], dtype=torch.float64
    )
    dist.all_reduce(ranges, "max")
    largest = torch.tensor([c.max for _, c in hists], dtype=torch.float64)
    dist.all_reduce(largest, "max")
    for (_, calibrator), value in zip(hists, largest.tolist(), strict=True):
        calibrator.max = value
    for (name, calibrator), common in zip(hists, ranges.tolist(), strict=True):
        if common == 0.0:
            continue  # no rank saw data: load_amax reports it unused
        if calibrator.hist is None:
            calibrator.start(common, device)
            continue
        try:
            calibrator.grow_to(common)
        except ValueError:
            raise QtoolError(
                f"{name} saw no data in the first calibration batch, so the ranks' histograms "
                "have no common range: calibrate on one process or with calib.method max"
            ) from None
    stacked = torch.stack(
        [torch.cat([c.hist, c.hist.new_tensor([c.top])]) for _, c in hists if c.hist is not None]
    )
    dist.all_reduce(stacked, "sum")
    rows = iter(stacked)
    for _, calibrator in hists:
        if calibrator.hist is not None:
            row = next(rows)
            calibrator.hist, calibrator.top = row[:-1].clone(), float(row[-1])


def sharded_forward_loop(
    batches: Sequence[dict], device: str, description: str = "calibrating"
) -> Callable[[nn.Module], None]:
    """A forward loop for `collect_statistics`: a plain loop over `batches` in one process; in a
    distributed run, this rank's share of them and then the merge of every rank's statistics."""
    from qtoolkit.ui import track

    def run(model: nn.Module, batch: dict) -> None:
        model(**{k: v.to(device) for k, v in batch.items()})

    def loop(model: nn.Module) -> None:
        dist.init(device)
        rank, world = dist.rank(), dist.world_size()
        mine = list(range(rank, len(batches), world))
        shared = world == 1
        for i in track(mine, description, total=len(mine)):
            if not shared and rank != 0:
                share_start_ranges(model)
                shared = True
            run(model, batches[i])
            if not shared:  # rank 0, after batch 0
                share_start_ranges(model)
                shared = True
        if not shared:
            share_start_ranges(model)
        reduce_statistics(model)

    return loop
