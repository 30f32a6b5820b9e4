"""Quantizer insertion, calibration and quantized checkpoints."""

from qtoolkit.quant.calibrate import CalibResult, calibrate, collect_statistics, load_amax
from qtoolkit.quant.checkpoint import load_quantized, save_quantized
from qtoolkit.quant.insert import InsertReport, insert_quantizers, iter_quantizers
from qtoolkit.quant.report import amax_records

__all__ = [
    "CalibResult",
    "InsertReport",
    "amax_records",
    "calibrate",
    "collect_statistics",
    "insert_quantizers",
    "iter_quantizers",
    "load_amax",
    "load_quantized",
    "save_quantized",
]
