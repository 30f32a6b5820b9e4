"""Recipe fields of the PTQ tools that stay close to fp32: SmoothQuant, bias correction and
autoquant.

Kept out of recipe.py so that file stays small: `QuantConfig` inherits `quant.smoothquant` and
`quant.auto` from `QuantPtqFields`, `CalibConfig` inherits `calib.bias_correction` from
`CalibPtqFields`. Same strictness as every recipe section: unknown keys are rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from qtoolkit.recipe_io import StrictModel as _Strict

__all__ = ["AutoQuantConfig", "CalibPtqFields", "QuantPtqFields", "SmoothQuantConfig"]


class SmoothQuantConfig(_Strict):
    """SmoothQuant: per input channel, activation range moved into the following weights
    (exact in float; see qtoolkit.quant.smoothquant)."""

    alpha: float | list[float] = Field(
        0.5,
        description="Migration strength in [0, 1]; a list is searched on data.eval_file by "
        "qtool autoquant (qtool calibrate takes the first).",
    )
    sites: list[Literal["qkv", "ffn_in", "attn_out", "ffn_out"]] = Field(
        default_factory=lambda: ["qkv", "ffn_in", "attn_out", "ffn_out"],
        min_length=1,
        description="qkv/ffn_in fold into the LayerNorm before them, attn_out into the value "
        "projection, ffn_out is an explicit per-channel scale.",
    )

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, alpha: float | list[float]) -> float | list[float]:
        values = alpha if isinstance(alpha, list) else [alpha]
        if not values or any(not 0.0 <= a <= 1.0 for a in values):
            raise ValueError(f"every alpha must be in [0, 1], got {alpha}")
        return alpha


class AutoQuantConfig(_Strict):
    """`qtool autoquant`: leave the fewest GEMMs in float that bring the dev metric within
    `budget_points` of fp32 (selection on data.eval_file only; data.test_file is reported)."""

    budget_points: float = Field(0.2, ge=0, description="Allowed loss vs fp32, in points.")
    metric: str | None = Field(
        None, description="Task metric (default: the task's primary one) or 'agreement'."
    )
    methods: list[str] | None = Field(
        None, min_length=1, description="Calibrators to choose from on dev (default: all)."
    )
    granularity: Literal["gemm", "role"] = Field(
        "gemm", description="Fallback unit: one GEMM (its input + weight) or a role in all layers."
    )
    max_fallback: int | None = Field(None, ge=0, description="At most this many units in float.")
    latency: bool = Field(True, description="Time each fallback step on ONNX Runtime.")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, names: list[str] | None) -> list[str] | None:
        from qtoolkit.quant.calib.registry import CALIB_METHODS

        unknown = [n for n in names or [] if n not in CALIB_METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown} (known: {', '.join(CALIB_METHODS)})")
        return names


# The two mixins are plain models: recipe.QuantConfig / CalibConfig put StrictModel first.
class QuantPtqFields(BaseModel):
    """Base of recipe.QuantConfig: its SmoothQuant and autoquant sub-sections."""

    smoothquant: SmoothQuantConfig | None = Field(None, description="Off unless set.")
    auto: AutoQuantConfig | None = Field(None, description="Settings of qtool autoquant.")


class CalibPtqFields(BaseModel):
    """Base of recipe.CalibConfig: bias correction after calibration."""

    bias_correction: bool = Field(
        False,
        description="After calibration, shift each quantized GEMM's bias by its mean output "
        "error on the calibration data (stored in the checkpoint, exported with it).",
    )
