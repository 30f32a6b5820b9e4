"""Graph passes on an exported QDQ model: fold weight quantization, drop redundant Q/DQ, and
(for the ONNX Runtime layout) give each quantized consumer its own Q/DQ pair.

None of these changes the computed values, and none breaks TensorRT's explicit-quantization
rules: weights become int8 initializers feeding DequantizeLinear (the form TensorRT documents),
scales stay fp32 with zero points 0 and per-channel axis 0.

Why split shared Q/DQ (`export.target: onnxruntime` only): ONNX Runtime fuses
`Q -> DQ -> MatMul` (+ int8 weight DQ) into `MatMulIntegerToFloat` / `QLinearMatMul` only when
that Q feeds a single DQ feeding a single node. The TorchScript exporter merges identical
quantizers (BERT's Q/K/V inputs and the residual input all quantize the same LayerNorm output
with the same amax), and ORT's common-subexpression pass merges identical copies again unless
each copy has its own scale/zero-point initializers. Measured on MiniLM with onnxruntime 1.31:
without this, 24 of 48 MatMuls stayed in float; with it, none. The TensorRT layout keeps the
single shared pair (TensorRT does its own fusion; duplicate Q nodes are untested there)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from qtoolkit.export.graph import GraphIndex, attr, prune_unused, same_qdq_params

__all__ = [
    "PassReport",
    "fold_weight_quantizers",
    "remove_redundant_qdq",
    "split_shared_qdq",
    "prune_unused",
    "optimize_qdq",
]


@dataclass
class PassReport:
    folded_weights: int = 0
    merged_duplicates: int = 0
    removed_requantize: int = 0
    split_pairs: int = 0
    convs_as_matmuls: int = 0
    grouped_regions: int = 0
    channels_last_transposes: int = 0
    merged_head_views: int = 0
    uint8_quantizers: int = 0
    smooth_scales_moved: int = 0  # openvino layout: see ov_layout.py


def _broadcast(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def quantize_array(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1
) -> np.ndarray:
    """ONNX QuantizeLinear on a constant: round half to even, saturate to the zero point's type."""
    axis = axis % max(x.ndim, 1)
    info = np.iinfo(zero_point.dtype)
    q = np.rint(x.astype(np.float32) / _broadcast(scale.astype(np.float32), x.ndim, axis))
    q = q + _broadcast(zero_point.astype(np.int32), x.ndim, axis)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def fold_weight_quantizers(model: onnx.ModelProto) -> int:
    """Replace `Q(constant weight)` by an int8 initializer feeding the DequantizeLinear."""
    graph = model.graph
    idx = GraphIndex(graph)
    folded, new_inits, dead = 0, [], []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        weight = idx.constant(node.input[0])
        scale = idx.constant(node.input[1])
        zero_point = idx.constant(node.input[2])
        if weight is None or scale is None or zero_point is None:
            continue
        name = f"{node.input[0]}_quantized"
        new_inits.append(
            numpy_helper.from_array(
                quantize_array(weight, scale, zero_point, attr(node, "axis", 1)), name
            )
        )
        for consumer in idx.consumers[node.output[0]]:
            for i, inp in enumerate(consumer.input):
                if inp == node.output[0]:
                    consumer.input[i] = name
        dead.append(node)
        folded += 1
    for node in dead:
        graph.node.remove(node)
    graph.initializer.extend(new_inits)
    prune_unused(model)
    return folded


def _qdq_key(idx: GraphIndex, node: onnx.NodeProto):
    """Identity of a Q or DQ node by its data input, constant parameters and axis."""
    params = []
    for name in node.input[1:]:
        value = idx.constant(name)
        if value is None:
            return None
        params.append((value.dtype.str, value.shape, value.tobytes()))
    return (node.op_type, node.input[0], tuple(params), attr(node, "axis", 1))


def _rewire(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp == old:
                node.input[i] = new


def remove_redundant_qdq(model: onnx.ModelProto) -> tuple[int, int]:
    """Merge duplicate Q (or DQ) nodes of one tensor, and drop re-quantization `DQ -> Q` with
    identical parameters (the second Q reproduces the first Q's output exactly).

    Returns (duplicates merged, re-quantizations removed).
    """
    graph = model.graph
    merged = requant = 0
    changed = True
    while changed:
        changed = False
        idx = GraphIndex(graph)
        seen: dict = {}
        for node in graph.node:
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue
            key = _qdq_key(idx, node)
            if key is None:
                continue
            if key in seen and node.output[0] not in idx.graph_outputs:
                _rewire(graph, node.output[0], seen[key])
                merged += 1
                changed = True
            else:
                seen.setdefault(key, node.output[0])
            if node.op_type == "QuantizeLinear":
                dq = idx.producer.get(node.input[0])
                q = idx.producer.get(dq.input[0]) if dq is not None else None
                if (
                    dq is not None
                    and dq.op_type == "DequantizeLinear"
                    and q is not None
                    and q.op_type == "QuantizeLinear"
                    and same_qdq_params(idx, q, node)
                    and same_qdq_params(idx, dq, node)
                    and node.output[0] not in idx.graph_outputs
                ):
                    _rewire(graph, node.output[0], q.output[0])
                    requant += 1
                    changed = True
        if changed:
            prune_unused(model)
    return merged, requant


def split_shared_qdq(model: onnx.ModelProto, share_quantize: bool = True) -> int:
    """Give every consumer of an activation `Q -> DQ` its own DQ, with its own parameters.

    With `share_quantize` the consumers keep reading one QuantizeLinear (one quantization of
    the tensor at run time); otherwise each gets its own Q as well. Returns the number of DQs
    added.
    """
    graph = model.graph
    idx = GraphIndex(graph)
    added: dict[str, list[onnx.NodeProto]] = {}
    new_inits = []
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or idx.is_constant(q.input[0]):
            continue
        uses = [
            (dq, consumer)
            for dq in idx.consumers[q.output[0]]
            if dq.op_type == "DequantizeLinear"
            for consumer in idx.consumers[dq.output[0]]
        ]
        if len(uses) <= 1 or any(dq.output[0] in idx.graph_outputs for dq, _ in uses):
            continue
        params = [idx.constant(name) for name in q.input[1:]]
        if any(p is None for p in params):
            continue
        pairs = []
        for k, (dq, consumer) in enumerate(uses[1:], start=1):
            names = [f"{q.name or q.output[0]}/split{k}/{role}" for role in ("scale", "zero_point")]
            new_inits += [
                numpy_helper.from_array(v, n) for v, n in zip(params, names, strict=False)
            ]
            q_out = q.output[0]
            if not share_quantize:
                q2 = copy.deepcopy(q)
                q2.name = f"{q.name}/split{k}"
                q2.input[1:] = names[: len(q.input) - 1]
                q2.output[0] = q_out = f"{q.output[0]}/split{k}"
                pairs.append(q2)
            dq2 = copy.deepcopy(dq)
            dq2.name = f"{dq.name}/split{k}"
            dq2.input[:] = [q_out, *names[: len(dq.input) - 1]]
            dq2.output[0] = f"{dq.output[0]}/split{k}"
            for i, inp in enumerate(consumer.input):
                if inp == dq.output[0]:
                    consumer.input[i] = dq2.output[0]
                    break
            pairs.append(dq2)
        added[q.output[0]] = pairs
    if not added:
        return 0
    nodes = []
    for node in graph.node:
        nodes.append(node)
        if node.op_type == "QuantizeLinear" and node.output[0] in added:
            nodes.extend(added[node.output[0]])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    prune_unused(model)
    return sum(sum(n.op_type == "DequantizeLinear" for n in p) for p in added.values())


def optimize_qdq(
    model: onnx.ModelProto,
    split_shared: bool = True,
    convs_as_matmuls: bool | None = None,
    share_quantize: bool = True,
) -> PassReport:
    """All passes in order, in place; `split_shared` selects the ONNX Runtime (CPU) layout.

    The CPU layout (see cpu_layout.py) also rewrites pointwise convolutions as MatMuls
    (`convs_as_matmuls`, default: with `split_shared`), lets the consumers of a tensor share its
    QuantizeLinear (`share_quantize`) and moves activations to uint8.
    """
    from qtoolkit.export.conv_matmul import convs_to_matmuls

    report = PassReport()
    report.folded_weights = fold_weight_quantizers(model)
    report.merged_duplicates, report.removed_requantize = remove_redundant_qdq(model)
    if split_shared if convs_as_matmuls is None else convs_as_matmuls:
        report.convs_as_matmuls = convs_to_matmuls(model)
        if report.convs_as_matmuls:
            from qtoolkit.export.grouped_chain import keep_grouped_layout

            report.grouped_regions = keep_grouped_layout(model)
            from qtoolkit.export.channels_last import channels_last, merge_head_views

            report.channels_last_transposes = channels_last(model)
            report.merged_head_views = merge_head_views(model)
    if split_shared:
        from qtoolkit.export.cpu_layout import uint8_activations

        report.split_pairs = split_shared_qdq(model, share_quantize)
        report.uint8_quantizers = uint8_activations(model)
    return report
