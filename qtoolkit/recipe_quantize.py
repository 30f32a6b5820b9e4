"""The `quantize` recipe section: settings of `qtool quantize`, the one-command front door.

Kept out of recipe.py so that file stays small; `Recipe.quantize` is a `QuantizeConfig`. The
runtime presets (qtoolkit.quant.presets) fill this section and the `quant`/`calib`/`export`
ones; a recipe or `--set` overrides any of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from qtoolkit.recipe_io import StrictModel

__all__ = ["QuantizeConfig"]


class QuantizeConfig(StrictModel):
    """`qtool quantize`: candidates scored on held-out calibration text, the best one exported
    in the runtime's layout and checked on that runtime."""

    runtime: str = Field(
        "onnxruntime",
        description="Deployment runtime, one of qtoolkit.quant.presets.PRESETS: onnxruntime, "
        "openvino, tensorrt. Its preset sets the defaults of quant/calib/export/quantize.",
    )
    calibrators: list[str] = Field(
        default_factory=lambda: ["entropy", "mse"],
        min_length=1,
        description="Activation calibrators tried for each SmoothQuant alpha "
        "(quant.smoothquant.alpha, a list is searched).",
    )
    holdout: int = Field(
        128,
        ge=8,
        description="Calibration sentences held out from range setting to score the candidates "
        "(taken after calib.num_samples; when the file is shorter, its last quarter).",
    )
    score: Literal["kl", "relative"] = Field(
        "kl",
        description="Label-free score: 'kl' (mean KL divergence of the softmax outputs from "
        "fp32's) or 'relative' (relative squared error of the outputs).",
    )
    budget_points: float | None = Field(
        None,
        ge=0,
        description="Float fallback: leave the fewest GEMMs in float that bring the selection "
        "figure within this many points of fp32 (the --eval-file metric, else agreement on the "
        "held-out text). None: every GEMM stays INT8.",
    )
    max_fallback: int | None = Field(None, ge=0, description="With budget_points: at most N.")
    latency: bool = Field(True, description="Time fp32 and INT8 on the runtime for the report.")
    latency_shapes: list[tuple[int, int]] = Field(
        default_factory=lambda: [(1, 128), (32, 64)],
        min_length=1,
        description="(batch, seq) shapes timed for the report.",
    )
    latency_iterations: int = Field(
        10,
        ge=1,
        description="Timed runs per backend and shape, in interleaved rounds: the report's "
        "check (qtool benchmark times with more).",
    )
    threads: int | None = Field(None, ge=1, description="Runtime threads (default: all cores).")
    output_dir: Path | None = Field(None, description="Default: <output_dir>/quantized.")

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, name: str) -> str:
        from qtoolkit.quant.presets import PRESETS

        if name not in PRESETS:
            raise ValueError(f"unknown runtime '{name}' (known: {', '.join(PRESETS)})")
        return name

    @field_validator("calibrators")
    @classmethod
    def _known_calibrators(cls, names: list[str]) -> list[str]:
        from qtoolkit.quant.calib.registry import CALIB_METHODS

        unknown = [n for n in names if n not in CALIB_METHODS]
        if unknown:
            raise ValueError(f"unknown calibrators {unknown} (known: {', '.join(CALIB_METHODS)})")
        if len(set(names)) != len(names):
            raise ValueError(f"a calibrator is listed twice: {names}")
        return names

    @field_validator("latency_shapes")
    @classmethod
    def _positive_shapes(cls, shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(b < 1 or s < 1 for b, s in shapes):
            raise ValueError(f"every batch and seq must be >= 1, got {shapes}")
        return shapes
