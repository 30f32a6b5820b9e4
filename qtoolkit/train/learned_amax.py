"""Learning activation amax during QAT with LSQ-style gradients (Esser et al., 2020).

pytorch-quantization's fake quantization passes gradients to the input inside [-amax, amax] but
none to amax. For training only, `learnable_amax` turns each enabled per-tensor activation
quantizer's `_amax` buffer into an `nn.Parameter` of the same name (so state-dict keys do not
change) and swaps the quantizer's class for `LearnedAmaxQuantizer`, whose forward is the same
arithmetic as pytorch-quantization's with a gradient for amax. On exit every quantizer is a plain
`TensorQuantizer` with an `_amax` buffer again; `plain_amax` does the same for the length of a
`with` block (to save a checkpoint mid-training) and then restores the very same Parameter
objects, so the optimizer keeps working. Weights' per-channel amax stay frozen.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from pytorch_quantization.nn import TensorQuantizer
from pytorch_quantization.tensor_quant import _tensor_quant
from torch import nn

from qtoolkit.dist import batch_share
from qtoolkit.quant.insert import iter_quantizers
from qtoolkit.quant.roles import is_weight_quantizer

__all__ = [
    "LearnedAmaxQuantizer",
    "amax_param_groups",
    "learnable_amax",
    "lsq_fake_quant",
    "plain_amax",
]

# Learned amax never goes below this (a zero amax quantizes everything to 0 and has no gradient).
MIN_AMAX = 1e-4


def _bounds(num_bits: int, unsigned: bool, narrow_range: bool) -> tuple[float, float]:
    max_bound = 2.0 ** (num_bits - 1 + int(unsigned)) - 1.0
    if unsigned:
        return 0.0, max_bound
    return (-max_bound if narrow_range else -max_bound - 1.0), max_bound


class _LsqFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, amax, num_bits, unsigned, narrow_range):
        amax = amax.clamp_min(MIN_AMAX)
        ctx.save_for_backward(inputs, amax)
        ctx.bounds = _bounds(num_bits, unsigned, narrow_range)
        ctx.share = batch_share()
        # pytorch-quantization's own arithmetic, so a learned quantizer at a given amax gives
        # bit for bit what the frozen one gives.
        outputs, scale = _tensor_quant(inputs, amax, num_bits, unsigned, narrow_range)
        return outputs / scale.to(inputs.dtype)

    @staticmethod
    def backward(ctx, grad_outputs):
        inputs, amax = ctx.saved_tensors
        min_bound, max_bound = ctx.bounds
        inside = inputs.abs() <= amax
        grad_inputs = torch.where(inside, grad_outputs, torch.zeros_like(grad_outputs))
        x = inputs.float() * (max_bound / amax.float())
        q = torch.clamp(torch.round(x), min_bound, max_bound)
        # d(q * amax / max_bound) / d amax with round() passed straight through: inside the
        # range (round(x) - x) / max_bound, outside it the clip level q / max_bound.
        d_amax = (q - torch.where(inside, x, torch.zeros_like(x))) / max_bound
        # LSQ's gradient scale keeps amax updates commensurate with weight updates.
        # Counted over the whole global batch when this rank trains on a share of it.
        numel = inputs.numel() / ctx.share if ctx.share > 0 else inputs.numel()
        factor = 1.0 / math.sqrt(numel / amax.numel() * max_bound)
        grad_amax = (grad_outputs.float() * d_amax * factor).sum_to_size(amax.shape)
        return grad_inputs, grad_amax.to(amax.dtype), None, None, None


def lsq_fake_quant(
    inputs: torch.Tensor,
    amax: torch.Tensor,
    num_bits: int = 8,
    unsigned: bool = False,
    narrow_range: bool = True,
) -> torch.Tensor:
    """Fake quantization with straight-through gradients to `inputs` and LSQ gradients to
    `amax` (any shape that broadcasts to `inputs`)."""
    return _LsqFakeQuant.apply(inputs, amax, num_bits, unsigned, narrow_range)


class LearnedAmaxQuantizer(TensorQuantizer):
    """A TensorQuantizer whose `_amax` is a Parameter; only ever present during training."""

    def _quant_forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if TensorQuantizer.use_fb_fake_quant or not self._fake_quant:
            return super()._quant_forward(inputs)
        return lsq_fake_quant(
            inputs, self._amax, self._num_bits, self._unsigned, self._narrow_range
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # TensorQuantizer's hook only looks for `_amax` among buffers and, not finding it,
        # registers a CUDA buffer; the Parameter loads like any other.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)


def _learnable(name: str, quantizer: nn.Module) -> bool:
    return (
        type(quantizer) is TensorQuantizer
        and not is_weight_quantizer(name)
        and not quantizer._disabled
        and "_amax" in quantizer._buffers
        and quantizer._amax.numel() == 1
    )


def _to_buffer(quantizer: nn.Module) -> nn.Parameter:
    param = quantizer._parameters.pop("_amax")
    quantizer.register_buffer("_amax", param.detach().clamp_min(MIN_AMAX))
    quantizer.__class__ = TensorQuantizer
    return param


def _to_parameter(quantizer: nn.Module, param: nn.Parameter) -> None:
    quantizer._buffers.pop("_amax", None)
    quantizer.register_parameter("_amax", param)
    quantizer.__class__ = LearnedAmaxQuantizer


@contextlib.contextmanager
def learnable_amax(
    model: nn.Module, enabled: bool = True
) -> Iterator[list[tuple[str, nn.Parameter]]]:
    """Make enabled per-tensor activation amax trainable inside the block; yields
    (quantizer name, amax Parameter). With `enabled` False it changes nothing and yields []."""
    learned: list[tuple[str, nn.Module, nn.Parameter]] = []
    if enabled:
        for name, quantizer in list(iter_quantizers(model)):
            if _learnable(name, quantizer):
                value = quantizer._buffers.pop("_amax")
                param = nn.Parameter(value.detach().float().clamp_min(MIN_AMAX).clone())
                _to_parameter(quantizer, param)
                learned.append((name, quantizer, param))
    try:
        yield [(name, param) for name, _, param in learned]
    finally:
        for _, quantizer, _ in learned:
            if isinstance(quantizer, LearnedAmaxQuantizer):
                _to_buffer(quantizer)


@contextlib.contextmanager
def plain_amax(model: nn.Module) -> Iterator[None]:
    """Inside the block every learned amax is a plain `_amax` buffer again (for saving); after
    it the same Parameter objects are back in place."""
    held = [
        (quantizer, _to_buffer(quantizer))
        for _, quantizer in iter_quantizers(model)
        if isinstance(quantizer, LearnedAmaxQuantizer)
    ]
    try:
        yield
    finally:
        for quantizer, param in held:
            _to_parameter(quantizer, param)


def amax_param_groups(
    learned: list[tuple[str, nn.Parameter]], relative_lr: float
) -> list[dict[str, Any]]:
    """One optimizer group per amax, lr = relative_lr x its start value, no weight decay: Adam
    moves a parameter by about lr per step, so amax of 0.5 and of 200 both move by about
    `relative_lr` of themselves."""
    return [
        {"params": [param], "lr": relative_lr * float(param.detach().abs()), "weight_decay": 0.0}
        for _, param in learned
    ]
