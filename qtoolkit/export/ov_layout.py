"""The OpenVINO layout (`export.target: openvino`): the TensorRT graph, with SmoothQuant's
LayerNorm scale moved onto the quantizer's branch, where OpenVINO's CPU plugin can fuse it.

SmoothQuant on the `qkv` and `ffn_in` sites folds 1/s into the LayerNorm before the GEMMs, and
BERT's residual (post-LN) then takes the LayerNorm output back to its own scale with a
per-channel `Mul` by s. In ONNX:

    LayerNorm(gamma/s, beta/s) -> QuantizeLinear -> ...           (the GEMM's input)
                               -> Mul(s) -> Add                   (the residual)

The LayerNorm output has two consumers, so OpenVINO cannot fuse the FakeQuantize it makes of the
Q/DQ pair into the LayerNorm as a post-op: it runs alone, in f32, with a reorder from bf16 on
each side (18 of MiniLM's 19 unfused FakeQuantize ops, with the attention context ones). This
pass gives the same values the other way round, as NNCF lays out its own SmoothQuant:

    LayerNorm(gamma, beta) -> Mul(1/s) -> QuantizeLinear -> ...   (Mul and FakeQuantize fuse)
                           -> Add                                 (the residual, as in fp32)

Only the rounding of gamma/s*s changes (float32, relative 1e-7): validation against PyTorch
holds as for every export.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import numpy_helper

from qtoolkit.export.graph import GraphIndex, prune_unused, source_constant

__all__ = ["smooth_scale_to_quantizer"]


def _per_channel(idx: GraphIndex, node: onnx.NodeProto, x: str) -> np.ndarray | None:
    """c of a `Mul(x, c)` whose c is a positive float vector, else None."""
    if node.op_type != "Mul" or len(node.input) != 2 or x not in node.input:
        return None
    other = node.input[1] if node.input[0] == x else node.input[0]
    value = source_constant(idx, other)
    if value is None or value.ndim != 1 or value.dtype != np.float32 or not np.all(value > 0):
        return None
    return value


def smooth_scale_to_quantizer(model: onnx.ModelProto) -> int:
    """Rewrite each `LayerNorm -> {QuantizeLinear, Mul(s) -> ...}` as above, in place. Returns
    the number of LayerNorms rewritten."""
    graph = model.graph
    idx = GraphIndex(graph)
    plans = []  # (LayerNorm, residual Mul, s, quantizers, gamma, beta): all found first
    for ln in graph.node:
        if ln.op_type != "LayerNormalization" or len(ln.input) != 3:
            continue
        y = ln.output[0]
        consumers = idx.consumers.get(y, [])
        quantizers = [c for c in consumers if c.op_type == "QuantizeLinear" and c.input[0] == y]
        scales = [(c, _per_channel(idx, c, y)) for c in consumers if c.op_type == "Mul"]
        scales = [(c, s) for c, s in scales if s is not None]
        gamma, beta = (source_constant(idx, n) for n in ln.input[1:3])
        if not quantizers or len(scales) != 1 or gamma is None or beta is None:
            continue
        mul, scale = scales[0]
        if y in idx.graph_outputs or mul.output[0] in idx.graph_outputs:
            continue
        if scale.shape != gamma.shape or beta.shape != gamma.shape:
            continue
        plans.append((ln, mul, scale, quantizers, gamma, beta))
    removed = set()
    inserts = {}
    for ln, mul, scale, quantizers, gamma, beta in plans:
        y = ln.output[0]
        # LayerNorm back at fp32's scale (new initializers: the exporter may share a constant,
        # e.g. an all-zero beta, between nodes); its residual consumers take it as it is.
        for k, part, value in ((1, "gamma", gamma * scale), (2, "beta", beta * scale)):
            name = f"{ln.name}/{part}_unsmoothed"
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
            ln.input[k] = name
        for c in idx.consumers.get(mul.output[0], []):
            c.input[:] = [y if i == mul.output[0] else i for i in c.input]
        removed.add(mul.name or mul.output[0])
        # 1/s on the quantizers' branch only.
        inverse, smoothed = f"{y}/smooth_inverse", f"{y}/smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        inserts[ln.name] = onnx.helper.make_node(
            "Mul", [y, inverse], [smoothed], name=f"{ln.name}/smooth"
        )
        for q in quantizers:
            q.input[0] = smoothed
    if not plans:
        return 0
    nodes = []  # the node list rebuilt, still topologically sorted
    for node in graph.node:
        if node.op_type == "Mul" and (node.name or node.output[0]) in removed:
            continue
        nodes.append(copy.deepcopy(node))
        if node.op_type == "LayerNormalization" and node.name in inserts:
            nodes.append(inserts[node.name])
    del graph.node[:]
    graph.node.extend(nodes)
    prune_unused(model)
    return len(plans)
