"""A quantized model in memory, and the one step every loader of saved amax values needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qtoolkit.errors import QtoolError
from qtoolkit.models.registry import ArchSpec
from qtoolkit.quant.insert import iter_quantizers

__all__ = ["QuantizedCheckpoint", "check_saved_amax", "prepare_amax_buffers"]


@dataclass
class QuantizedCheckpoint:
    model: nn.Module
    tokenizer: Any
    spec: ArchSpec
    manifest: dict[str, Any]


def prepare_amax_buffers(model: nn.Module, shapes: dict[str, torch.Size]) -> None:
    """Create each `_amax` buffer on the CPU with its saved shape before a state dict is loaded
    (pytorch-quantization would otherwise create it on CUDA)."""
    for name, quantizer in iter_quantizers(model):
        key = f"{name}._amax"
        if key in shapes and not hasattr(quantizer, "_amax"):
            quantizer.register_buffer("_amax", torch.empty(shapes[key]))


def check_saved_amax(model: nn.Module, source: object, zero_ok: bool = True) -> None:
    """Refuse a loaded amax that cannot be a range, naming the quantizer (and channel): NaN or
    inf, negative, or (unless `zero_ok`) 0, which quantizes everything to 0 with a Q/DQ scale
    of 0. qtool's calibration keeps a weight row of zeros at 0 (it stays 0); an imported
    checkpoint has no such reason."""
    for name, quantizer in iter_quantizers(model):
        amax = getattr(quantizer, "_amax", None)
        if amax is None or quantizer._disabled:
            continue
        flat = amax.detach().float().reshape(-1)
        bad = ~torch.isfinite(flat) | (flat < 0)
        if not zero_ok:
            bad |= flat == 0
        if not bool(bad.any()):
            continue
        i = int(bad.nonzero()[0])
        value = float(flat[i])
        where = f" (channel {i} of {flat.numel()})" if flat.numel() > 1 else ""
        why = "a range is a finite number > 0"
        if value == 0:
            why = "every value would quantize to 0 (a Q/DQ scale of 0)"
        raise QtoolError(
            f"{source}: quantizer {name} has amax {value:g}{where}; {why}: calibrate it again "
            "(qtool calibrate)"
        )
