"""Keep a grouped GEMM's output in its grouped layout when the next GEMM has the same groups.

After `convs_to_matmuls`, SqueezeBERT's FFN reads (per layer, `g` = intermediate = output groups):

    MatMul [B, g, S, C/g] -> Transpose -> Reshape [B, C, S]      (back to the Conv layout)
      -> GELU (Div, Erf, Add, Mul, Mul) -> QuantizeLinear
      -> Reshape [B, g, C/g, S] -> Transpose [B, g, S, C/g]      (the output conv's grouped view)
      -> DequantizeLinear -> MatMul

The intermediate conv's output group `j` is channels `j*C/g ... (j+1)*C/g - 1`, which is exactly the
output conv's input group `j`, so the two views are inverses around ops that work element by
element. This pass drops both and runs GELU and the QuantizeLinear on `[B, g, S, C/g]`: two
fewer Transposes of the layer's widest tensor (one float, one uint8), the same values.

It applies where, between a `convs_to_matmuls` view back and the grouped views of the next
GEMMs: every op is element-wise with scalar constants, every quantizer is per tensor, nothing
else reads the tensors in between, and groups and group widths match. Anything else is left
as it is.
"""

from __future__ import annotations

import numpy as np
import onnx

from qtoolkit.export.graph import GraphIndex, prune_unused

__all__ = ["ELEMENTWISE_OPS", "keep_grouped_layout"]

# Ops that compute each element from the same element (and scalar constants).
ELEMENTWISE_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Erf", "Tanh", "Sigmoid", "Relu", "Neg", "Abs", "Exp", "Sqrt",
     "Pow", "Gelu", "Clip"}
)  # fmt: skip
_SWAP_LAST_TWO = [0, 1, 3, 2]


def _perm(node: onnx.NodeProto) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def _shape(idx: GraphIndex, node: onnx.NodeProto) -> list[int] | None:
    value = idx.constant(node.input[1]) if len(node.input) > 1 else None
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _view_back(idx: GraphIndex, reshape: onnx.NodeProto) -> tuple[str, int, int] | None:
    """(grouped tensor, groups, width) if `reshape` is `Transpose(0,1,3,2) -> Reshape [0, C, -1]`
    of a `[B, g, S, width]` tensor (conv_matmul's way back), else None."""
    transpose = idx.producer.get(reshape.input[0])
    if transpose is None or transpose.op_type != "Transpose":
        return None
    if _perm(transpose) != _SWAP_LAST_TWO or len(idx.consumers[transpose.output[0]]) != 1:
        return None
    shape = _shape(idx, reshape)
    channel_scale = _grouped_constant(idx, transpose.input[0])
    if shape is None or len(shape) != 3 or shape[0] != 0 or shape[2] != -1 or channel_scale is None:
        return None
    groups, width = channel_scale
    if groups * width != shape[1]:
        return None
    return transpose.input[0], groups, width


def _grouped_constant(idx: GraphIndex, name: str) -> tuple[int, int] | None:
    """(g, width) from the `[g, 1, width]` per-channel constant of the Mul/Add making `name`."""
    node = idx.producer.get(name)
    while node is not None and node.op_type in ("Add", "Mul"):
        for inp in node.input:
            value = idx.constant(inp)
            if value is not None and value.ndim == 3 and value.shape[1] == 1:
                return int(value.shape[0]), int(value.shape[2])
        node = idx.producer.get(node.input[0])
    return None


def _grouped_view(idx: GraphIndex, reshape: onnx.NodeProto) -> tuple[int, int, str] | None:
    """(groups, width, output) if `reshape` is `Reshape [0, g, width, -1] -> Transpose(0,1,3,2)`
    (conv_matmul's grouped view) and only that Transpose reads it, else None."""
    if reshape.op_type != "Reshape":
        return None
    shape = _shape(idx, reshape)
    readers = idx.consumers[reshape.output[0]]
    if shape is None or len(shape) != 4 or shape[0] != 0 or shape[3] != -1 or len(readers) != 1:
        return None
    transpose = readers[0]
    if transpose.op_type != "Transpose" or _perm(transpose) != _SWAP_LAST_TWO:
        return None
    return shape[1], shape[2], transpose.output[0]


def _is_scalar(idx: GraphIndex, name: str) -> bool:
    value = idx.constant(name)
    return value is not None and np.asarray(value).size == 1


def _elementwise_region(idx: GraphIndex, start: str):
    """(nodes, quantizers) reached from `start` through element-wise ops, ending at per-tensor
    QuantizeLinear nodes; None if anything else reads a tensor on the way."""
    nodes: dict[str, onnx.NodeProto] = {}
    quantizers: dict[str, onnx.NodeProto] = {}
    stack = [start]
    while stack:
        tensor = stack.pop()
        if tensor in idx.graph_outputs:
            return None
        for reader in idx.consumers[tensor]:
            key = reader.name or reader.output[0]
            if reader.op_type == "QuantizeLinear" and reader.input[0] == tensor:
                if not all(_is_scalar(idx, n) for n in reader.input[1:]):
                    return None
                quantizers[key] = reader
            elif reader.op_type in ELEMENTWISE_OPS:
                if key not in nodes:
                    nodes[key] = reader
                    stack.extend(reader.output)
            else:
                return None
    inside = {start} | {o for n in nodes.values() for o in n.output}
    for node in nodes.values():
        if not all(i in inside or _is_scalar(idx, i) for i in node.input if i):
            return None
    return list(nodes.values()), list(quantizers.values())


def _rewrite_one(idx: GraphIndex, reshape: onnx.NodeProto) -> bool:
    back = _view_back(idx, reshape)
    if back is None:
        return False
    grouped, groups, width = back
    region = _elementwise_region(idx, reshape.output[0])
    if region is None or not region[1]:
        return False
    nodes, quantizers = region
    views = []
    for q in quantizers:
        readers = idx.consumers[q.output[0]]
        if not readers or q.output[0] in idx.graph_outputs:
            return False
        for reader in readers:
            view = _grouped_view(idx, reader)
            if view is None or view[:2] != (groups, width):
                return False
            views.append((q.output[0], view[2]))
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == reshape.output[0]:
                node.input[i] = grouped
    for q_out, view_out in views:
        for reader in idx.consumers[view_out]:
            for i, name in enumerate(reader.input):
                if name == view_out:
                    reader.input[i] = q_out
    return True


def keep_grouped_layout(model: onnx.ModelProto) -> int:
    """Drop inverse view pairs around element-wise ops between grouped GEMMs (module doc).

    Returns the number of regions rewritten."""
    count = 0
    while True:
        idx = GraphIndex(model.graph)
        done = next(
            (n for n in model.graph.node if n.op_type == "Reshape" and _rewrite_one(idx, n)), None
        )
        if done is None:
            break
        count += 1
        prune_unused(model)
    return count
