"""PTQ candidates: SmoothQuant alpha x calibrator (x bias correction), each built and scored.

Shared by `qtool quantize` and `qtool autoquant`. The caller passes the forward loop that sets
ranges and a `score(model, candidate)` that says how good a built candidate is; this module never
reads data itself. Statistics are collected once per kind (max, histogram) for each alpha and
shared by every calibrator of that kind; SmoothQuant's per-channel statistics are collected
once (in float, on the unsmoothed model) and shared by every alpha.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from qtoolkit.recipe import CalibConfig

__all__ = ["Candidate", "ScoredCandidates", "build_candidate", "calibrations", "score_candidates"]

ForwardLoop = Callable[[nn.Module], None]


@dataclass(frozen=True)
class Candidate:
    method: str
    alpha: float | None = None  # SmoothQuant migration strength; None: no SmoothQuant
    bias_correction: bool = False

    @property
    def label(self) -> str:
        parts = [self.method]
        parts.append("no SmoothQuant" if self.alpha is None else f"SmoothQuant {self.alpha:g}")
        if self.bias_correction:
            parts.append("bias correction")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "alpha": self.alpha, "bias_correction": self.bias_correction}


def calibrations(
    model: nn.Module, loop: ForwardLoop, calib: CalibConfig, methods: Sequence[str]
) -> Iterator[str]:
    """Set the model's ranges with each method in turn (yielding its name while they are set).
    Weights are calibrated once; activation statistics once: histograms when any method needs
    them (they also keep the largest |x|, which is what max needs), else maxima."""
    from qtoolkit.quant.calib.registry import get_calibrator
    from qtoolkit.quant.calibrate import (
        calibrate_weights,
        collect_statistics,
        load_amax,
        release_statistics,
    )

    calibrate_weights(model)
    specs = [get_calibrator(m) for m in methods]
    kinds = {spec.statistics for spec in specs}
    collect_with = next(
        s for s in specs if s.statistics == ("max" if kinds == {"max"} else "histogram")
    )
    try:
        collect_statistics(model, loop, calib.model_copy(update={"method": collect_with.name}))
        for spec in specs:
            load_amax(model, calib.model_copy(update={"method": spec.name}))
            yield spec.name
    finally:
        release_statistics(model)


class ScoredCandidates(list):
    """The (candidate, score) pairs of `score_candidates`, which can also hand back any
    candidate's built model (`take`) without building it again: the SmoothQuant-ed copy of
    each alpha is kept, with every candidate's ranges and bias shifts."""

    def __init__(self) -> None:
        super().__init__()
        self._models: dict[float | None, nn.Module] = {}
        self._states: dict[Candidate, tuple[dict[str, Any], Any]] = {}

    def take(self, candidate: Candidate):
        """(model, bias correction or None) of `candidate`, built; the other copies are freed."""
        from qtoolkit.quant.insert import iter_quantizers

        model = self._models[candidate.alpha]
        ranges, shifts = self._states[candidate]
        for name, quantizer in iter_quantizers(model):
            if name in ranges:
                amax, disabled = ranges[name]
                quantizer._amax = amax.clone()
                quantizer.disable() if disabled else quantizer.enable()
        if shifts is not None:
            _add_shifts(model, shifts)
        self._models.clear()
        self._states.clear()
        return model, shifts


def _ranges(model: nn.Module) -> dict[str, Any]:
    from qtoolkit.quant.insert import iter_quantizers

    return {
        name: (q._amax.detach().clone(), q._disabled)
        for name, q in iter_quantizers(model)
        if getattr(q, "_amax", None) is not None
    }


def _add_shifts(model: nn.Module, shifts) -> None:
    import torch

    with torch.no_grad():
        for name, delta in shifts.deltas.items():
            bias = model.get_submodule(name).bias
            bias.add_(delta.to(bias.device, bias.dtype))


def score_candidates(
    model: nn.Module,
    loop: ForwardLoop,
    calib: CalibConfig,
    alphas: Sequence[float | None],
    methods: Sequence[str],
    sites: Sequence[str],
    bias_correction: bool,
    score: Callable[[nn.Module, Candidate], dict[str, Any]],
    bias_loop: ForwardLoop | None = None,
    keep: bool = False,
) -> ScoredCandidates:
    """Every alpha x method, built on a copy of `model` (quantizers inserted, not calibrated;
    left as it is) and scored. With `bias_correction` each candidate is scored as it would be
    built: with its own bias correction, measured over `bias_loop` (default `loop`). With
    `keep`, the built copies stay for `ScoredCandidates.take` (one model copy per alpha)."""
    from qtoolkit.quant.bias_correction import correct_biases, revert_biases
    from qtoolkit.quant.smoothquant import apply_smoothquant, collect_input_absmax, smooth_sites

    absmax = None
    if any(a is not None for a in alphas):
        absmax = collect_input_absmax(model, smooth_sites(model, list(sites)), loop)
    scored = ScoredCandidates()
    for alpha in alphas:
        work = copy.deepcopy(model)
        if alpha is not None:
            apply_smoothquant(work, loop, alpha, list(sites), stats=absmax)
        for method in calibrations(work, loop, calib, methods):
            candidate = Candidate(method, alpha, bias_correction)
            shifts = correct_biases(work, bias_loop or loop) if bias_correction else None
            scored.append((candidate, score(work, candidate)))
            if shifts is not None:
                revert_biases(work, shifts)
            if keep:
                scored._states[candidate] = (_ranges(work), shifts)
        if keep:
            scored._models[alpha] = work
        del work
    return scored


def build_candidate(
    model: nn.Module,
    loop: ForwardLoop,
    calib: CalibConfig,
    sites: Sequence[str],
    candidate: Candidate,
    bias_loop: ForwardLoop | None = None,
):
    """Build `candidate` on `model` in place (SmoothQuant, ranges, bias correction over
    `bias_loop`, default `loop`); returns the bias correction (or None)."""
    from qtoolkit.quant.bias_correction import correct_biases
    from qtoolkit.quant.calibrate import calibrate
    from qtoolkit.quant.smoothquant import apply_smoothquant

    if candidate.alpha is not None:
        apply_smoothquant(model, loop, candidate.alpha, list(sites))
    calibrate(model, loop, calib.model_copy(update={"method": candidate.method}))
    return correct_biases(model, bias_loop or loop) if candidate.bias_correction else None
