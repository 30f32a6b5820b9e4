"""Calibrators: the method registry (`registry.py`), `MaxCalibrator` (pytorch-quantization's)
and our `HistogramCalibrator`."""

from qtoolkit.quant.calib.histogram import (
    HistogramCalibrator,
    amax_entropy,
    amax_mse,
    amax_percentile,
)
from qtoolkit.quant.calib.registry import CALIB_METHODS, CALIBRATORS, get_calibrator

__all__ = [
    "CALIBRATORS",
    "CALIB_METHODS",
    "HistogramCalibrator",
    "amax_entropy",
    "amax_mse",
    "amax_percentile",
    "get_calibrator",
]
