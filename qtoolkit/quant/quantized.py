"""A quantized model in memory, and the one step every loader of saved amax values needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qtoolkit.models.registry import ArchSpec
from qtoolkit.quant.insert import iter_quantizers

__all__ = ["QuantizedCheckpoint", "prepare_amax_buffers"]


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
