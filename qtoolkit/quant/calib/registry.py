"""Calibration methods, registered by name: the one list the recipe, the CLI, the PTQ sweep and
`qtool run` read.

A method names the statistics it needs (`max`: the running absolute maximum; `histogram`: our
|x| histogram) and, for histogram methods, the rule that turns a histogram into an amax. One
collection pass serves every method that needs the same statistics, which is how the PTQ sweep
derives percentile, mse and entropy from a single pass over the data.

Adding a method is one entry in `CALIBRATORS` (plus its tests); nothing else lists them.
This module imports nothing heavy at module level, and nothing from the recipe (which reads
this list): a rule takes any settings object with the fields of `HistogramSettings`, such as
the recipe's `CalibConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from qtoolkit.errors import QtoolError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CALIBRATORS", "CALIB_METHODS", "Calibrator", "HistogramSettings", "get_calibrator"]


class HistogramSettings(Protocol):
    """What the histogram rules read from the calibration settings (`CalibConfig` has these)."""

    percentile: float
    start_bin: int
    stride: int


# (counts, edges, settings, num_bits, unsigned) -> amax
HistogramRule = Callable[["np.ndarray", "np.ndarray", HistogramSettings, int, bool], float]


@dataclass(frozen=True)
class Calibrator:
    name: str
    statistics: Literal["max", "histogram"]
    description: str
    rule: HistogramRule | None = None  # histogram methods only

    def label(self, cfg: HistogramSettings) -> str:
        """How tables name the method with its settings, e.g. 'percentile 99.99'."""
        return f"{self.name} {cfg.percentile:g}" if self.name == "percentile" else self.name


def _percentile(counts, edges, cfg, num_bits, unsigned) -> float:
    from qtoolkit.quant.calib.rules import amax_percentile

    return amax_percentile(counts, edges, cfg.percentile)


def _mse(counts, edges, cfg, num_bits, unsigned) -> float:
    from qtoolkit.quant.calib.rules import amax_mse

    return amax_mse(counts, edges, num_bits, unsigned, cfg.start_bin, cfg.stride)


def _entropy(counts, edges, cfg, num_bits, unsigned) -> float:
    from qtoolkit.quant.calib.rules import amax_entropy

    return amax_entropy(counts, edges, num_bits, unsigned, cfg.start_bin, cfg.stride)


CALIBRATORS: dict[str, Calibrator] = {
    c.name: c
    for c in (
        Calibrator("max", "max", "absolute maximum seen"),
        Calibrator(
            "percentile",
            "histogram",
            "the calib.percentile point of the histogram of |x|",
            _percentile,
        ),
        Calibrator(
            "mse", "histogram", "clip value minimising expected squared quantization error", _mse
        ),
        Calibrator("entropy", "histogram", "TensorRT's KL-divergence rule", _entropy),
    )
}
CALIB_METHODS: tuple[str, ...] = tuple(CALIBRATORS)


def get_calibrator(name: str) -> Calibrator:
    try:
        return CALIBRATORS[name]
    except KeyError:
        raise QtoolError(
            f"unknown calibration method '{name}' (known: {', '.join(CALIB_METHODS)})"
        ) from None
