"""Runtime presets for `qtool quantize`: what each runtime gets by default, as data.

A preset is a partial recipe (its `quant`, `calib`, `export` and `quantize` sections) plus the
reasons it is what it is. `qtool quantize --runtime R` lays the user's recipe and `--set`
overrides over `PRESETS[R].recipe`, so any key of a preset can be changed without code, and a
new runtime is one more entry here (ModelOpt's configs are dicts in the same way).

What a preset decides:

* placement: `quant.residual_add` (the skip input of each residual add) and
  `quant.attention_matmul` (both inputs of Q.K^T and probs.V); every GEMM is INT8 in all of them;
* activation encoding: symmetric int8 everywhere (TensorRT accepts nothing else; the ONNX
  Runtime layout re-expresses it as uint8 with zero point 128);
* SmoothQuant sites and the alpha candidates (`quant.smoothquant`);
* the calibrator candidates (`quantize.calibrators`) and bias correction (`calib.bias_correction`);
* the export layout (`export.target`) and the runtime that checks the result (`check_runtime`).

The contents were chosen by measurement on the dev split (scripts/preset_search.py writes
docs/results/preset_search.json; the README's "Runtime presets" section gives the figures).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["PRESETS", "RUNTIME_NAMES", "Preset", "get_preset", "preset_yaml"]

_ALL_SITES = ["qkv", "ffn_in", "attn_out", "ffn_out"]


@dataclass(frozen=True)
class Preset:
    runtime: str
    summary: str  # one line for --help and the report
    recipe: Mapping[str, Any]  # partial recipe: quant / calib / export / quantize keys
    check_runtime: str  # where fp32 and INT8 are compared after export (a runtime of targets.py)
    why: tuple[str, ...] = field(default=())  # the measured reasons, for --show-preset and docs


PRESETS: dict[str, Preset] = {
    p.runtime: p
    for p in (
        Preset(
            runtime="onnxruntime",
            summary="CPU, ONNX Runtime: residual adds in float, SmoothQuant (alpha 0.8/0.9) and "
            "calibrator (entropy/max) chosen on held-out text, bias correction; every GEMM INT8",
            recipe={
                "quant": {
                    "linear": True,
                    "conv1d": True,
                    "attention_matmul": True,
                    "residual_add": False,
                    "smoothquant": {"alpha": [0.8, 0.9], "sites": _ALL_SITES},
                },
                "calib": {"bias_correction": True},
                "export": {"target": "onnxruntime"},
                "quantize": {"calibrators": ["entropy", "max"]},
            },
            check_runtime="onnxruntime",
            why=(
                "Residual adds stay in float: on ONNX Runtime a quantized skip input only adds a "
                "Q/DQ pair (its kernels do not fuse the add into the GEMM) and it is where most "
                "of the PTQ error sits (group_error.json); NNCF's transformer preset does the "
                "same.",
                "SmoothQuant on all four sites moves the activation outliers of MiniLM's "
                "LayerNorm outputs into the per-channel weights. On dev (preset_search.json, "
                "600 sentences) the candidates without SmoothQuant agreed with fp32 on "
                "95.3-97.3% of decisions, with alpha 0.5 on 89.7-97.2%, with alpha 0.8-0.95 on "
                "98.0-99.7%: the candidates are alpha 0.8 and 0.9.",
                "Calibrators: the best dev agreement per calibrator with SmoothQuant was max "
                "99.67%, entropy 99.50%, percentile 99.50%, mse 99.00% (ties within their "
                "intervals); entropy and max are kept, and the held-out KL picks between them "
                "(its rank correlation with dev KL over 40 candidates: 0.96).",
                "Bias correction removes the mean output shift of each INT8 GEMM: with alpha "
                "0.8-0.9 and entropy or max it agreed 0.3-0.8 points more often on dev (a gain "
                "inside the intervals, in every one of those four pairs).",
            ),
        ),
        Preset(
            runtime="openvino",
            summary="CPU, OpenVINO: the ONNX Runtime preset's choices in OpenVINO's layout "
            "(one Q/DQ per tensor, convolutions kept)",
            recipe={
                "quant": {
                    "linear": True,
                    "conv1d": True,
                    "attention_matmul": True,
                    "residual_add": False,
                    "smoothquant": {"alpha": [0.8, 0.9], "sites": _ALL_SITES},
                },
                "calib": {"bias_correction": True},
                "export": {"target": "openvino"},
                "quantize": {"calibrators": ["entropy", "max"]},
            },
            check_runtime="openvino",
            why=(
                "OpenVINO reads Q/DQ pairs as FakeQuantize and runs the GEMMs after them in "
                "INT8; the one-Q/DQ-per-tensor layout (export.target openvino) is what it fuses "
                "best, and ran 1.24-1.42x faster than the ONNX Runtime layout on OpenVINO.",
                "Residual adds in float, as NNCF's transformer preset leaves them; SmoothQuant, "
                "calibrators and bias correction as for onnxruntime (the same fake-quantized "
                "model, only the Q/DQ layout differs).",
            ),
        ),
        Preset(
            runtime="tensorrt",
            summary="GPU, TensorRT: every GEMM, attention matmul and residual add INT8 "
            "(symmetric), SmoothQuant (alpha 0.8/0.95) and calibrator (percentile/entropy) "
            "chosen on held-out text, bias correction",
            recipe={
                "quant": {
                    "linear": True,
                    "conv1d": True,
                    "attention_matmul": True,
                    "residual_add": True,
                    "residual_inputs": "residual",
                    "smoothquant": {"alpha": [0.8, 0.95], "sites": _ALL_SITES},
                },
                "calib": {"bias_correction": True},
                "export": {"target": "tensorrt"},
                "quantize": {"calibrators": ["percentile", "entropy"]},
            },
            check_runtime="onnxruntime",
            why=(
                "TensorRT fuses a residual add into the INT8 GEMM before it only when its skip "
                "input is quantized, and its fused multi-head attention needs both attention "
                "matmuls in INT8: this is its fastest placement.",
                "Symmetric activations only (TensorRT's ONNX parser requires zero point 0).",
                "SmoothQuant on all four sites: on dev it agreed with fp32 on up to 99.33% "
                "with every residual add quantized, against 96.67% with attn_out alone (the "
                "only site that folds into weights with no op left). The others leave a "
                "per-channel Mul before a quantizer (residual skip, FFN output), which "
                "TensorRT can fuse into the QuantizeLinear after it; its cost on a GPU is not "
                "measured here (no GPU).",
                "Calibrators percentile and entropy with alpha 0.8/0.95 and bias correction: "
                "the top dev candidates of this placement (99.33%, 99.17%, 99.17%).",
            ),
        ),
    )
}
RUNTIME_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_preset(runtime: str) -> Preset:
    try:
        return PRESETS[runtime]
    except KeyError:
        raise QtoolError(f"unknown runtime '{runtime}' (known: {', '.join(PRESETS)})") from None


def preset_yaml(runtime: str) -> str:
    """The preset as the recipe YAML it stands for, with its reasons as comments."""
    import textwrap

    import yaml

    preset = get_preset(runtime)
    lines = textwrap.wrap(
        f"qtool quantize --runtime {runtime}: {preset.summary}",
        96,
        initial_indent="# ",
        subsequent_indent="#   ",
    )
    for reason in preset.why:
        lines += textwrap.wrap(reason, 96, initial_indent="# - ", subsequent_indent="#   ")
    lines.append("# Any key below can be changed in a recipe (-r) or with --set.")
    body = yaml.safe_dump({k: copy.deepcopy(v) for k, v in preset.recipe.items()}, sort_keys=False)
    return "\n".join(lines) + "\n" + body
