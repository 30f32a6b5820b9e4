"""Calibrators: `MaxCalibrator` (pytorch-quantization's) and our `HistogramCalibrator`."""

from qtoolkit.quant.calib.histogram import (
    HistogramCalibrator,
    amax_entropy,
    amax_mse,
    amax_percentile,
)

__all__ = ["HistogramCalibrator", "amax_entropy", "amax_mse", "amax_percentile"]
