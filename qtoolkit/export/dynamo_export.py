"""The dynamo (torch.export-based) ONNX exporter path, for when the TorchScript one is gone.

torch.export cannot trace pytorch-quantization's fake quant: `_fb_fake_quant` calls
`amax.item()`, a data-dependent value. Nor, in torch 2.13, `torch.fake_quantize_per_*_affine`
itself: it decomposes to `fake_quantize_per_*_affine_cachemask`, which has no fake-tensor kernel.
What it traces is the `quantized_decomposed` quantize/dequantize pair with constant scales, which
onnxscript translates to QuantizeLinear/DequantizeLinear and which computes exactly what
`fake_quantize_per_*_affine` computes. So for the export `constant_fake_quant` swaps every
enabled `TensorQuantizer` for a `ConstantFakeQuant` holding its scale (amax / 127, computed once
here on the host) and puts the quantizers back in `finally`: the arithmetic and Q/DQ placement
are those of the TorchScript export (`use_fb_fake_quant`).

Needs `onnxscript` (`pip install 'qtoolkit[dynamo]'`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from qtoolkit.errors import QtoolError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ConstantFakeQuant",
    "constant_fake_quant",
    "drop_saturating_clips",
    "dynamo_available",
    "run_dynamo_exporter",
]


class ConstantFakeQuant(nn.Module):
    """What `torch.fake_quantize_per_{tensor,channel}_affine` computes, with a fixed scale.

    Per tensor the scale is a Python float (a graph constant); per channel it is a buffer, which
    the exporter turns into an initializer. Zero point 0, range [-2^(b-1), 2^(b-1) - 1], as
    pytorch-quantization's ONNX path uses.
    """

    def __init__(self, amax: torch.Tensor, num_bits: int, unsigned: bool):
        super().__init__()
        import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers the ops

        if unsigned:
            raise QtoolError("unsigned quantizers cannot be exported with the dynamo exporter")
        bound = (1 << (num_bits - 1)) - 1
        self.quant_min = -bound - 1
        self.quant_max = bound
        amax = amax.detach().float().cpu()
        if amax.numel() == 1:
            self.axis = None
            self.scale = float(amax.item()) / bound
        else:
            squeezed = amax.squeeze()
            if squeezed.dim() != 1:
                raise QtoolError("per-channel amax over more than one axis cannot be exported")
            self.axis = list(amax.shape).index(squeezed.shape[0])
            self.register_buffer("scale_tensor", squeezed / bound)
            self.register_buffer("zero_point", torch.zeros(squeezed.shape, dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # quantize + dequantize is fake_quantize_*_affine bit for bit (tested), but unlike it
        # has fake-tensor kernels, so torch.export can trace it.
        ops = torch.ops.quantized_decomposed
        lo, hi, int8 = self.quant_min, self.quant_max, torch.int8
        if self.axis is None:
            q = ops.quantize_per_tensor(x, self.scale, 0, lo, hi, int8)
            return ops.dequantize_per_tensor(q, self.scale, 0, lo, hi, int8)
        scale, zero, axis = self.scale_tensor, self.zero_point, self.axis
        q = ops.quantize_per_channel(x, scale, zero, axis, lo, hi, int8)
        return ops.dequantize_per_channel(q, scale, zero, axis, lo, hi, int8)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, range=[{self.quant_min}, {self.quant_max}]"


def _replacement(quantizer: nn.Module) -> nn.Module:
    if quantizer._disabled or not quantizer._if_quant:
        return nn.Identity()
    amax = getattr(quantizer, "_amax", None)
    if amax is None:
        raise QtoolError("a quantizer has no amax: calibrate the model before export")
    if quantizer._scale_amax is not None:
        amax = amax * quantizer._scale_amax
    return ConstantFakeQuant(amax, quantizer._num_bits, quantizer._unsigned)


@contextlib.contextmanager
def constant_fake_quant(model: nn.Module) -> Iterator[int]:
    """Swap every TensorQuantizer of `model` for its constant-scale equivalent (disabled ones
    for identities); yields how many quantize. The originals are back when the block exits."""
    from qtoolkit.quant.insert import iter_quantizers

    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for name, quantizer in list(iter_quantizers(model)):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            new = _replacement(quantizer)
            setattr(parent, child, new)
            swapped.append((parent, child, quantizer))
        yield sum(1 for p, c, _ in swapped if isinstance(getattr(p, c), ConstantFakeQuant))
    finally:
        for parent, child, quantizer in reversed(swapped):
            setattr(parent, child, quantizer)


def dynamo_available() -> str | None:
    """None when the dynamo exporter can run here, else why not (one line)."""
    if importlib.util.find_spec("onnxscript") is None:
        return (
            "export.exporter 'dynamo' needs onnxscript (pip install onnxscript, or "
            "pip install 'qtoolkit[dynamo]')"
        )
    return None


def _dynamic_shapes(input_names: Sequence[str], dynamic_axes: dict) -> tuple:
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for name in input_names:
        axes = dynamic_axes.get(name, {})
        spec = {}
        for axis, label in axes.items():
            if label not in dims:
                dims[label] = torch.export.Dim(label)
            spec[axis] = dims[label]
        shapes.append(spec)
    return tuple(shapes)


def run_dynamo_exporter(
    module: nn.Module,
    args: tuple,
    path: Path,
    opset: int,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict,
) -> None:
    """`torch.onnx.export(dynamo=True)` of `module`, whose quantizers must already be constant
    (run inside `constant_fake_quant`)."""
    import warnings

    reason = dynamo_available()
    if reason:
        raise QtoolError(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=(_dynamic_shapes(input_names, dynamic_axes),),
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001 - torch.export raises many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if os.environ.get("QTOOL_DEBUG"):
                raise
            raise QtoolError(f"the dynamo ONNX exporter failed: {first[:300]}") from None


def drop_saturating_clips(model: onnx.ModelProto) -> int:
    """Remove `QuantizeLinear -> Clip(-128, 127)` clips (int8) and return how many.

    onnxscript's per-channel quantize adds a Clip to the explicit quant range; with the full int8
    range it changes nothing, and it would sit between Q and DQ, where TensorRT and the weight
    folding pass expect them adjacent.
    """
    import numpy as np

    from qtoolkit.export.graph import GraphIndex

    graph = model.graph
    idx = GraphIndex(graph)
    dropped = []
    for node in graph.node:
        if node.op_type != "Clip" or len(node.input) != 3:
            continue
        source = idx.producer.get(node.input[0])
        lo, hi = idx.constant(node.input[1]), idx.constant(node.input[2])
        if source is None or source.op_type != "QuantizeLinear" or lo is None or hi is None:
            continue
        info = np.iinfo(lo.dtype) if np.issubdtype(lo.dtype, np.integer) else None
        if info is None or int(lo) != info.min or int(hi) != info.max:
            continue
        if node.output[0] in idx.graph_outputs:
            continue
        dropped.append(node)
        for consumer in idx.consumers.get(node.output[0], []):
            for i, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[i] = node.input[0]
    for node in dropped:
        graph.node.remove(node)
    return len(dropped)
