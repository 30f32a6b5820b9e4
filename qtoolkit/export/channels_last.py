"""Run SqueezeBERT's residual stream as `[batch, seq, channels]` in the CPU layout.

SqueezeBERT keeps its hidden states as `[B, C, S]` (Conv1d's layout) and wraps every LayerNorm
in two Transposes (`[B, C, S] -> [B, S, C] -> LayerNorm -> [B, C, S]`). Once `convs_to_matmuls`
has turned the 1x1 convolutions into GEMMs on `[B, g, S, C/g]`, nothing needs `[B, C, S]` any
more, yet each layer still moves its hidden states through 4 LayerNorm Transposes, 5 views back
to `[B, C, S]` and HF's attention permutes; ONNX Runtime's transpose optimizer cannot cancel
them through the Reshapes in between, and where it pushes one through a Q/DQ pair it adds a
second Q/DQ pair and a requantizing Q (measured, onnxruntime 1.32).

`channels_last` finds each connected region of `[B, C, S]` tensors (the residual stream between
two LayerNorms, a GEMM output on its way to HF's head split, the attention context on its way
to the post-attention GEMM) whose every op works element by element (Q/DQ per tensor, Add,
GELU, ... with scalar constants), and whose every edge is one of:

Each edge, as `[B, C, S]` -> as `[B, S, C]`:

- in from / out to `[B, S, C]`: `Transpose(0,2,1)` -> nothing;
- out to a grouped view `[B, g, S, k]`: `Reshape [B,g,k,S]`, `Transpose(0,1,3,2)` ->
  `Reshape [B,S,g,k]`, `Transpose(0,2,1,3)` (g = 1: one Reshape);
- out to HF's key view `[B, h, d, S]`: `Reshape [B,h,d,S]` -> `Reshape [B,S,h,d]`,
  `Transpose(0,2,3,1)`;
- in from `[B, g, S, k]`: `Transpose(0,1,3,2)`, `Reshape [B,C,S]` -> `Transpose(0,2,1,3)`,
  `Reshape [B,S,C]` (g = 1: one Reshape);

and rewrites the whole region as `[B, S, C]`. Then `merge_head_views` turns a GEMM's grouped
output going to HF's `[B, h, S, d]` (or `[B, h, d, S]`) head layout, two Transposes with two
Reshapes between them, into one 5-D Transpose when the heads split evenly into the groups.
Values are unchanged (the same elements in another order), so outputs match the Conv layout
exactly. A region with anything else in it (a graph output, a Shape, a per-channel quantizer)
is left as it was. BERT graphs have no `[B, C, S]` tensors, so the passes leave them alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qtoolkit.export.graph import GraphIndex, attr, prune_unused

__all__ = ["channels_last", "merge_head_views"]

_ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Erf", "Tanh", "Sigmoid", "Relu", "Gelu", "Identity", "Sqrt"}
)
_QDQ = ("QuantizeLinear", "DequantizeLinear")
# Ops that compute a target shape from `Shape` (HF's `x.view(x.size(0), ...)`).
_SHAPE_ARITHMETIC = frozenset(
    {"Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Mul", "Div", "Add", "Sub"}
)


def _perm(node: onnx.NodeProto) -> list[int] | None:
    value = attr(node, "perm")
    return None if value is None else [int(v) for v in value]


def _static_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Inferred shapes by tensor name (ints where static, None where not)."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            dims = tensor_type.shape.dim
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


class _Region:
    """One connected set of `[B, C, S]` tensors and the edges that bound it."""

    def __init__(self) -> None:
        self.tensors: set[str] = set()
        self.interior: list[onnx.NodeProto] = []
        self.enter: list[onnx.NodeProto] = []  # Transpose(0,2,1) into the region
        self.exit: list[onnx.NodeProto] = []  # Transpose(0,2,1) out of it
        self.views: list[tuple] = []  # (reshape, transpose or None, groups, width)
        self.gathers: list[tuple] = []  # (transpose, reshape, groups, width, channels)
        self.shapes: list[onnx.NodeProto] = []  # Shape nodes that only feed the views' shapes


class _Finder:
    def __init__(self, model: onnx.ModelProto):
        self.idx = GraphIndex(model.graph)
        self.shapes = _static_shapes(model)

    def _channels(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        # [B, C, S] with a dynamic sequence axis: a static one could not be told from C.
        if shape is None or len(shape) != 3 or not shape[1] or shape[2] is not None:
            return None
        return shape[1]

    def _scalar(self, name: str) -> bool:
        value = self.idx.constant(name)
        return value is not None and value.size == 1

    def _is_swap(self, node: onnx.NodeProto | None, perm: list[int]) -> bool:
        return node is not None and node.op_type == "Transpose" and _perm(node) == perm

    def _gather_edge(self, reshape: onnx.NodeProto, channels: int):
        """`[B, g, S, k] -> Transpose(0,1,3,2) -> Reshape [B, C, S]`, or None."""
        transpose = self.idx.producer.get(reshape.input[0])
        if not self._is_swap(transpose, [0, 1, 3, 2]):
            return None
        if len(self.idx.consumers[transpose.output[0]]) != 1:
            return None
        shape = self.shapes.get(transpose.input[0])
        if shape is None or len(shape) != 4 or not shape[1] or not shape[3]:
            return None
        if shape[1] * shape[3] != channels:
            return None
        return transpose, reshape, shape[1], shape[3], channels

    def _view_edge(self, reshape: onnx.NodeProto, channels: int):
        """`[B, C, S] -> Reshape [B, g, k, S]` (+ `Transpose(0,1,3,2)`), or None."""
        shape = self.shapes.get(reshape.output[0])
        if shape is None or len(shape) != 4 or not shape[1] or not shape[2]:
            return None
        if shape[1] * shape[2] != channels or reshape.output[0] in self.idx.graph_outputs:
            return None
        users = self.idx.consumers[reshape.output[0]]
        if len(users) == 1 and self._is_swap(users[0], [0, 1, 3, 2]):
            return reshape, users[0], shape[1], shape[2]
        return reshape, None, shape[1], shape[2]

    def region(self, start: str, claimed: set[str]) -> _Region | None:
        """The region around `[B, C, S]` tensor `start`, or None if it cannot be flipped."""
        region, stack = _Region(), [start]
        seen_nodes: set[int] = set()
        idx = self.idx
        while stack:
            name = stack.pop()
            if name in region.tensors:
                continue
            channels = self._channels(name)
            if channels is None or name in idx.graph_outputs or name in claimed:
                return None
            region.tensors.add(name)
            producer = idx.producer.get(name)
            nodes = [] if producer is None else [producer]
            nodes += idx.consumers[name]
            if producer is None:
                return None  # a graph input
            for node in nodes:
                if id(node) in seen_nodes:
                    continue
                is_producer = node is producer
                if node.op_type == "Transpose" and _perm(node) == [0, 2, 1]:
                    seen_nodes.add(id(node))
                    (region.enter if is_producer else region.exit).append(node)
                elif node.op_type == "Reshape" and is_producer:
                    edge = self._gather_edge(node, channels)
                    if edge is None:
                        return None
                    seen_nodes.add(id(node))
                    region.gathers.append(edge)
                elif node.op_type == "Reshape" and node.input[0] == name:
                    edge = self._view_edge(node, channels)
                    if edge is None:
                        return None
                    seen_nodes.add(id(node))
                    region.views.append(edge)
                elif node.op_type in _QDQ:
                    if node.input[0] != name and not is_producer:
                        return None
                    if not all(self._scalar(n) for n in node.input[1:]):
                        return None
                    seen_nodes.add(id(node))
                    region.interior.append(node)
                    stack += [node.input[0], node.output[0]]
                elif node.op_type in _ELEMENTWISE and len(node.output) == 1:
                    tensors = [n for n in [*node.input, *node.output] if not idx.is_constant(n)]
                    if any(self._channels(n) != channels for n in tensors):
                        return None  # broadcasting a [B, 1, S] tensor, say
                    seen_nodes.add(id(node))
                    region.interior.append(node)
                    for inp in node.input:
                        if not idx.is_constant(inp):
                            stack.append(inp)
                        elif not self._scalar(inp):
                            return None
                    stack.append(node.output[0])
                elif node.op_type == "Shape" and not is_producer:
                    seen_nodes.add(id(node))
                    region.shapes.append(node)
                else:
                    return None
        # A Shape of a region tensor may only feed the target shapes of the views rewritten
        # here (HF computes `x.view(B, h, d, S)` from `x.size()`), which become constants.
        views = {id(v[0]) for v in region.views}
        for shape in region.shapes:
            if not self._only_feeds_views(shape.output[0], views):
                return None
        return region

    def _only_feeds_views(self, name: str, views: set[int]) -> bool:
        if name in self.idx.graph_outputs:
            return False
        for user in self.idx.consumers[name]:
            if user.op_type == "Reshape" and id(user) in views and user.input[1] == name:
                continue
            if user.op_type not in _SHAPE_ARITHMETIC or not all(
                self._only_feeds_views(out, views) for out in user.output
            ):
                return False
        return True


def _const(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def channels_last(model: onnx.ModelProto) -> int:
    """Rewrite every flippable `[B, C, S]` region as `[B, S, C]` (module doc), in place.

    Returns the number of Transposes removed (net)."""
    graph = model.graph
    finder = _Finder(model)
    claimed: set[str] = set()
    regions: list[_Region] = []
    for node in graph.node:
        if node.op_type == "Transpose" and _perm(node) == [0, 2, 1]:
            starts = (node.output[0], node.input[0])
        elif node.op_type == "Reshape":
            starts = (node.output[0],)
        else:
            continue
        for start in starts:
            if start in claimed or finder._channels(start) is None:
                continue
            region = finder.region(start, claimed)
            if region is not None and (region.enter or region.gathers):
                regions.append(region)
                claimed |= region.tensors
    if not regions:
        return 0
    before = sum(n.op_type == "Transpose" for n in graph.node)
    rename: dict[str, str] = {}
    replace: dict[int, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []
    for region in regions:
        for t in region.enter:
            rename[t.output[0]] = t.input[0]
            replace[id(t)] = []
        for t in region.exit:
            if t.output[0] in finder.idx.graph_outputs:
                replace[id(t)] = [helper.make_node("Identity", [t.input[0]], [t.output[0]], t.name)]
            else:
                rename[t.output[0]] = t.input[0]
                replace[id(t)] = []
        for reshape, transpose, groups, width in region.views:
            base = reshape.name or reshape.output[0]
            src = reshape.input[0]
            if transpose is not None and groups == 1:
                inits.append(_const(f"{base}/nsc_shape", [0, 1, -1, width]))
                new = [helper.make_node("Reshape", [src, inits[-1].name], [transpose.output[0]],
                                        f"{base}/nsc")]  # fmt: skip
            else:
                inits.append(_const(f"{base}/nsc_shape", [0, -1, groups, width]))
                perm, out = ([0, 2, 1, 3], transpose.output[0]) if transpose else (
                    [0, 2, 3, 1], reshape.output[0])  # fmt: skip
                new = [
                    helper.make_node("Reshape", [src, inits[-1].name], [f"{base}/nsc_view"],
                                     f"{base}/nsc"),
                    helper.make_node("Transpose", [f"{base}/nsc_view"], [out],
                                     f"{base}/nsc_transpose", perm=perm),
                ]  # fmt: skip
            replace[id(reshape)] = new
            if transpose is not None:
                replace[id(transpose)] = []
        for transpose, reshape, groups, _width, channels in region.gathers:
            base = reshape.name or reshape.output[0]
            inits.append(_const(f"{base}/nsc_shape", [0, -1, channels]))
            if groups == 1:
                new = [helper.make_node("Reshape", [transpose.input[0], inits[-1].name],
                                        [reshape.output[0]], f"{base}/nsc")]  # fmt: skip
            else:
                new = [
                    helper.make_node("Transpose", [transpose.input[0]], [f"{base}/nsc_gathered"],
                                     f"{base}/nsc_transpose", perm=[0, 2, 1, 3]),
                    helper.make_node("Reshape", [f"{base}/nsc_gathered", inits[-1].name],
                                     [reshape.output[0]], f"{base}/nsc"),
                ]  # fmt: skip
            replace[id(reshape)] = new
            replace[id(transpose)] = []

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes.extend(replace.get(id(node), [node]))
    for node in nodes:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    stale = set().union(*(r.tensors for r in regions))
    keep = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    prune_unused(model)
    return before - sum(n.op_type == "Transpose" for n in graph.node)


def merge_head_views(model: onnx.ModelProto) -> int:
    """`[B,g,S,k] -> Transpose(0,2,1,3) -> Reshape [B,S,C] -> Reshape [B,S,h,d] -> Transpose`
    to HF's `[B,h,S,d]` (perm 0,2,1,3) or `[B,h,d,S]` (perm 0,2,3,1), as one 5-D Transpose.

    Applies when `h` is a multiple of `g` and nothing else reads the tensors in between.
    Returns the number of head views merged."""
    graph = model.graph
    idx = GraphIndex(graph)
    shapes = _static_shapes(model)
    replace: dict[int, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []

    def only_user(name: str, op: str) -> onnx.NodeProto | None:
        users = idx.consumers[name]
        if len(users) != 1 or users[0].op_type != op or name in idx.graph_outputs:
            return None
        return users[0]

    for first in graph.node:
        if first.op_type != "Transpose" or _perm(first) != [0, 2, 1, 3]:
            continue
        grouped = shapes.get(first.input[0])
        to_flat = only_user(first.output[0], "Reshape")
        to_heads = to_flat and only_user(to_flat.output[0], "Reshape")
        last = to_heads and only_user(to_heads.output[0], "Transpose")
        heads_shape = to_heads and shapes.get(to_heads.output[0])
        if not last or not grouped or not heads_shape or len(grouped) != 4 or len(heads_shape) != 4:
            continue
        groups, width, heads, head_dim = grouped[1], grouped[3], heads_shape[2], heads_shape[3]
        if not all((groups, width, heads, head_dim)) or heads % groups:
            continue
        if width != heads // groups * head_dim or _perm(last) not in ([0, 2, 1, 3], [0, 2, 3, 1]):
            continue
        key = _perm(last) == [0, 2, 3, 1]
        base = first.name or first.output[0]
        split = _const(f"{base}/heads_shape", [0, groups, -1, heads // groups, head_dim])
        merged = _const(f"{base}/merged_shape", [0, heads, head_dim, -1] if key else
                        [0, heads, -1, head_dim])  # fmt: skip
        inits += [split, merged]
        replace[id(first)] = [
            helper.make_node("Reshape", [first.input[0], split.name], [f"{base}/heads"],
                             f"{base}/heads"),
            helper.make_node("Transpose", [f"{base}/heads"], [f"{base}/heads_t"],
                             f"{base}/heads_transpose",
                             perm=[0, 1, 3, 4, 2] if key else [0, 1, 3, 2, 4]),
            helper.make_node("Reshape", [f"{base}/heads_t", merged.name], [last.output[0]],
                             f"{base}/heads_merged"),
        ]  # fmt: skip
        for node in (to_flat, to_heads, last):
            replace[id(node)] = []
    if not replace:
        return 0
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes.extend(replace.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    prune_unused(model)
    return len(inits) // 2
