"""Read-only views of an ONNX graph: who produces and who consumes each tensor, and constants.

Kept free of any runtime (no onnxruntime): the TensorRT-readiness check and the graph passes
both build on it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = [
    "GraphIndex",
    "SHAPE_OPS",
    "QDQ_OPS",
    "attr",
    "prune_unused",
    "same_qdq_params",
    "source_constant",
]

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Ops that move data without changing values: TensorRT propagates Q backwards and DQ forwards
# through them, so a DQ behind one of these still counts as feeding the GEMM.
SHAPE_OPS = frozenset(
    {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Expand", "Slice"}
)


def attr(node: onnx.NodeProto, name: str, default=None):
    """The value of attribute `name` of `node`, or `default`."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class GraphIndex:
    """Producer/consumer maps and constant values of one (top-level) graph.

    The index is a snapshot: rebuild it after changing the graph.
    """

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.graph_outputs = {o.name for o in graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant-node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            value = attr(node, "value")
            if isinstance(value, onnx.TensorProto):
                return numpy_helper.to_array(value)
        return None

    def is_constant(self, name: str) -> bool:
        if name in self.initializers:
            return True
        node = self.producer.get(name)
        return node is not None and node.op_type == "Constant"

    def producer_through(self, name: str, skip: frozenset[str] = SHAPE_OPS):
        """The first producer of `name` that is not a shape op (following input 0), or None."""
        node = self.producer.get(name)
        seen = 0
        while node is not None and node.op_type in skip and node.input and seen < 64:
            node = self.producer.get(node.input[0])
            seen += 1
        return node


def same_qdq_params(idx: GraphIndex, a: onnx.NodeProto, b: onnx.NodeProto) -> bool:
    """Whether two Q/DQ nodes have equal constant scales, zero points and axis."""
    if attr(a, "axis", 1) != attr(b, "axis", 1) or len(a.input) != len(b.input):
        return False
    for x, y in zip(a.input[1:], b.input[1:], strict=True):
        vx, vy = idx.constant(x), idx.constant(y)
        if vx is None or vy is None or vx.dtype != vy.dtype or not np.array_equal(vx, vy):
            return False
    return True


def prune_unused(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads and initializers no node reads."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input} | outputs
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def source_constant(idx: GraphIndex, name: str) -> np.ndarray | None:
    """A constant's value, looking through the Identity nodes the exporter puts on shared ones
    (e.g. biases or LayerNorm betas with equal values)."""
    node = idx.producer.get(name)
    while node is not None and node.op_type == "Identity":
        name = node.input[0]
        node = idx.producer.get(name)
    return idx.constant(name)
