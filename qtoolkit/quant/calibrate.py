"""Calibration: collect activation statistics with a caller's forward loop, then set amax.

The library never owns a data loader: the caller passes `forward_loop(model)`, which runs the
calibration batches through the model. Collection and amax computation are separate steps so one
pass over the data can serve every histogram method (`collect_statistics` then `load_amax`).

Weights are always calibrated with per-channel max, straight from the weight tensor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from qtoolkit.errors import QtoolError
from qtoolkit.quant.calib.histogram import HistogramCalibrator
from qtoolkit.quant.calib.registry import get_calibrator
from qtoolkit.quant.insert import iter_quantizers
from qtoolkit.quant.roles import is_weight_quantizer
from qtoolkit.recipe import CalibConfig

__all__ = [
    "CalibResult",
    "calibrate",
    "calibrate_weights",
    "collect_statistics",
    "load_amax",
    "release_statistics",
]

ForwardLoop = Callable[[nn.Module], None]


@dataclass
class CalibResult:
    method: str
    seconds: float = 0.0
    calibrated: list[str] = field(default_factory=list)
    # Activation quantizers that saw no data (e.g. a head the forward pass never reached).
    unused: list[str] = field(default_factory=list)


def calibrate_weights(model: nn.Module) -> list[str]:
    """Per-channel (or per-tensor) max of each weight, straight from the tensor."""
    from pytorch_quantization.calib import MaxCalibrator

    done = []
    for name, quantizer in iter_quantizers(model):
        if not is_weight_quantizer(name) or quantizer._disabled:
            continue
        parent = model.get_submodule(name.rpartition(".")[0])
        quantizer._calibrator = MaxCalibrator(
            quantizer.num_bits, quantizer.axis, quantizer.unsigned
        )
        quantizer.disable_quant()
        quantizer.enable_calib()
        with torch.no_grad():
            quantizer(parent.weight)
        quantizer.load_calib_amax()
        _check_amax(name, quantizer._amax, "its weight")
        quantizer.disable_calib()
        quantizer.enable_quant()
        quantizer._calibrator = None
        done.append(name)
    return done


def _activation_quantizers(model: nn.Module):
    for name, quantizer in iter_quantizers(model):
        if not is_weight_quantizer(name) and not quantizer._disabled:
            yield name, quantizer


def collect_statistics(model: nn.Module, forward_loop: ForwardLoop, cfg: CalibConfig) -> float:
    """Run `forward_loop` with every activation quantizer collecting (max or histogram).

    Quantization is off while collecting, so each quantizer sees float inputs. Returns seconds.
    """
    from pytorch_quantization.calib import MaxCalibrator

    statistics = get_calibrator(cfg.method).statistics
    quantizers = list(_activation_quantizers(model))
    if not quantizers:
        raise QtoolError("model has no enabled activation quantizers to calibrate")
    for _, quantizer in quantizers:
        if statistics == "max":
            quantizer._calibrator = MaxCalibrator(quantizer.num_bits, None, quantizer.unsigned)
        else:
            quantizer._calibrator = HistogramCalibrator(
                cfg.num_bins, quantizer.num_bits, quantizer.unsigned
            )
        quantizer.disable_quant()
        quantizer.enable_calib()
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        with torch.no_grad():
            forward_loop(model)
    finally:
        for _, quantizer in quantizers:
            quantizer.disable_calib()
            quantizer.enable_quant()
        model.train(was_training)
    return time.perf_counter() - start


def load_amax(model: nn.Module, cfg: CalibConfig) -> CalibResult:
    """Set every activation quantizer's amax from its collected statistics with `cfg.method`.

    Histograms are kept, so this can be called again with another histogram method. A quantizer
    that saw no data is disabled (left in float) and listed in `unused`.
    """
    spec = get_calibrator(cfg.method)
    result = CalibResult(method=cfg.method)
    start = time.perf_counter()
    for name, quantizer in _activation_quantizers(model):
        calibrator = getattr(quantizer, "_calibrator", None)
        if calibrator is None:
            raise QtoolError(f"{name} has no statistics: run collect_statistics first")
        if spec.statistics == "max" and isinstance(calibrator, HistogramCalibrator):
            # Histograms keep the largest |x| seen: the same amax a MaxCalibrator gives.
            amax = None if calibrator.hist is None else torch.tensor(calibrator.max)
            if calibrator.nonfinite:
                amax = torch.tensor(float("inf"))
        elif spec.statistics == "max":
            if not hasattr(calibrator, "_calib_amax"):
                raise QtoolError(
                    f"statistics were collected for a histogram method, not '{spec.name}'"
                )
            amax = calibrator.compute_amax()
        else:
            if not isinstance(calibrator, HistogramCalibrator):
                raise QtoolError(
                    f"'{spec.name}' needs histograms, but 'max' statistics were collected"
                )
            hist = calibrator.histogram()
            amax = torch.tensor(float("inf")) if calibrator.nonfinite else None
            if hist is not None and amax is None:
                rule = spec.rule(hist[0], hist[1], cfg, quantizer.num_bits, quantizer.unsigned)
                amax = torch.tensor(rule, dtype=torch.float32)
        if amax is None:
            result.unused.append(name)
            quantizer.disable()
            continue
        amax = amax.detach().float().reshape(())
        _check_amax(name, amax, f"its input during calibration ({cfg.method})")
        if float(amax) <= 0:
            # An all-zero input (e.g. a padding-only position) gives amax 0; keep it usable.
            amax = torch.tensor(1e-8)
        if hasattr(quantizer, "_amax"):
            quantizer._amax = amax.to(quantizer._amax.device)
        else:
            quantizer.register_buffer("_amax", amax)
        result.calibrated.append(name)
    result.seconds = time.perf_counter() - start
    return result


def _check_amax(name: str, amax: torch.Tensor, seen: str) -> None:
    """A NaN or inf range means the model (or the data) produced non-finite values: refuse it
    rather than save a checkpoint that quantizes everything to garbage."""
    if not bool(torch.isfinite(amax).all()):
        kind = "nan" if bool(torch.isnan(amax).any()) else "inf"
        raise QtoolError(
            f"quantizer {name}: amax is {kind}, because {seen} held non-finite values; check the "
            "model's weights (a fine-tune that diverged?) and the calibration data"
        )


def release_statistics(model: nn.Module) -> None:
    """Drop collected histograms (they can be large) once amax is final."""
    for _, quantizer in iter_quantizers(model):
        quantizer._calibrator = None


def calibrate(model: nn.Module, forward_loop: ForwardLoop, cfg: CalibConfig) -> CalibResult:
    """Calibrate weights (per-channel max) and activations (`cfg.method`) in place."""
    weights = calibrate_weights(model)
    collect_seconds = collect_statistics(model, forward_loop, cfg)
    result = load_amax(model, cfg)
    release_statistics(model)
    result.calibrated = weights + result.calibrated
    result.seconds += collect_seconds
    return result
