"""Rewrite quantized 1x1 (grouped) convolutions as integer-friendly MatMuls, for CPU runtimes.

SqueezeBERT's position-wise layers are `Conv1d(kernel_size=1, groups=g)` on `[batch, C, seq]`.
ONNX Runtime turns `DQ -> Conv` into its integer kernel (QLinearConv) only when a QuantizeLinear
follows the Conv; SqueezeBERT's post-attention, intermediate and output convolutions feed a
residual add or GELU, so they ran in float (36 of 72 convolutions in INT8 at squeezebert-uncased
size). A MatMul needs no output Q: `DQ -> MatMul` becomes `MatMulIntegerToFloat`.

A 1x1 convolution with `g` groups is `g` independent GEMMs over the channel slices:

    Q(x) [B, Cin, S] -> Transpose [B, S, Cin] -> Split(axis 2, g parts)      (quantized data)
      -> per group i: DequantizeLinear
         -> MatMul(Transpose(DQ(W_i [Cout/g, Cin/g] int8, scale on axis 0)))
         -> Add(bias_i)
      -> Concat(axis 2) -> Transpose [B, Cout, S]

The transposes and splits move quantized bytes (a quarter of the float ones); the products are
the same integers times the same scales, so outputs match the Conv form up to float summation
order. Grouped weights stay grouped: no block-diagonal expansion (which would cost g x FLOPs).
ORT fuses `Q -> Transpose/Split -> DQ -> MatMul` only with uint8 activations (on x86 it turns
int8 Q/DQ into uint8 only where a Q feeds a DQ directly), so the CPU layout runs
`uint8_activations` after this pass.

Only the CPU layout (`export.target: onnxruntime`) uses this; the TensorRT layout keeps Conv.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qtoolkit.export.graph import GraphIndex, attr, prune_unused, same_qdq_params

__all__ = ["convs_to_matmuls"]


def _is_pointwise(conv: onnx.NodeProto, weight: np.ndarray) -> bool:
    """A 1-D convolution that is a per-position GEMM: kernel 1, stride 1, no padding."""
    if weight.ndim != 3 or weight.shape[2] != 1:
        return False
    ones = (attr(conv, "strides", [1]), attr(conv, "dilations", [1]))
    pads = attr(conv, "pads", [0, 0])
    return (
        all(list(v) == [1] for v in ones)
        and not any(pads)
        and attr(conv, "auto_pad")
        in (
            None,
            b"NOTSET",
            "NOTSET",
        )
    )


def _source_constant(idx: GraphIndex, name: str) -> np.ndarray | None:
    """A constant, looking through Identity (the exporter wraps shared biases in one)."""
    node = idx.producer.get(name)
    while node is not None and node.op_type == "Identity":
        name = node.input[0]
        node = idx.producer.get(name)
    return idx.constant(name)


def _match(idx: GraphIndex, conv: onnx.NodeProto):
    """(activation DQ, weight int8, weight scale, bias or None) for a rewritable Conv, or None."""
    if conv.op_type != "Conv" or len(conv.input) < 2:
        return None
    x_dq, w_dq = idx.producer.get(conv.input[0]), idx.producer.get(conv.input[1])
    if x_dq is None or w_dq is None:
        return None
    if x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
        return None
    x_q = idx.producer.get(x_dq.input[0])
    if x_q is None or x_q.op_type != "QuantizeLinear" or not same_qdq_params(idx, x_q, x_dq):
        return None
    x_params = [idx.constant(n) for n in x_dq.input[1:]]
    weight, w_scale = idx.constant(w_dq.input[0]), idx.constant(w_dq.input[1])
    w_zero = idx.constant(w_dq.input[2]) if len(w_dq.input) > 2 else None
    if any(p is None or p.size != 1 for p in x_params) or weight is None or w_scale is None:
        return None  # activations must be per tensor, the weight a constant
    if weight.dtype != np.int8 or (w_zero is not None and w_zero.any()):
        return None
    if not _is_pointwise(conv, weight):
        return None
    cout = weight.shape[0]
    if w_scale.size == 1:
        w_scale = np.full(cout, float(w_scale.reshape(())), np.float32)
    elif attr(w_dq, "axis", 1) != 0 or w_scale.shape != (cout,):
        return None
    bias = _source_constant(idx, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if len(conv.input) > 2 and conv.input[2] and bias is None:
        return None
    return x_dq, weight, w_scale.astype(np.float32), bias


def _int8_slices(base: str, x_q: str, groups: int, width: int):
    """`x_q` [B, C, S] int8 -> Transpose [B, S, C] -> Split into `groups` along C.

    Returns the slice names, the nodes and their initializers.
    """
    nodes = [
        helper.make_node("Transpose", [x_q], [f"{base}/xt"], f"{base}/Transpose", perm=[0, 2, 1])
    ]
    if groups == 1:
        return [f"{base}/xt"], nodes, []
    sizes = numpy_helper.from_array(np.full(groups, width, np.int64), f"{base}/sizes")
    parts = [f"{base}/x{i}" for i in range(groups)]
    nodes.append(
        helper.make_node("Split", [f"{base}/xt", sizes.name], parts, f"{base}/Split", axis=2)
    )
    return parts, nodes, [sizes]


def _group_gemm(
    p: str,
    xq: str,
    x_scale: np.ndarray,
    x_zero: np.ndarray,
    weight: np.ndarray,
    w_scale: np.ndarray,
    bias: np.ndarray | None,
) -> tuple[str, list[onnx.NodeProto], list[onnx.TensorProto]]:
    """`DQ(xq) @ DQ(weight [Cout/g, Cin/g, 1])^T (+ bias)`; returns output, nodes, initializers."""
    cout = weight.shape[0]
    # Own scale/zero-point initializers per DQ: ORT's common-subexpression pass would otherwise
    # merge DQs of one shared Q and break the one-consumer rule of its QDQ fusion.
    inits = [
        numpy_helper.from_array(x_scale.reshape(()).astype(np.float32), f"{p}/x_scale"),
        numpy_helper.from_array(x_zero.reshape(()), f"{p}/x_zero_point"),
        numpy_helper.from_array(np.ascontiguousarray(weight[:, :, 0]), f"{p}/w"),
        numpy_helper.from_array(w_scale, f"{p}/w_scale"),
        numpy_helper.from_array(np.zeros(cout, np.int8), f"{p}/w_zero_point"),
    ]
    nodes = [
        helper.make_node(
            "DequantizeLinear",
            [xq, f"{p}/x_scale", f"{p}/x_zero_point"],
            [f"{p}/xd"],
            f"{p}/DequantizeLinear_x",
        ),
        helper.make_node(
            "DequantizeLinear",
            [f"{p}/w", f"{p}/w_scale", f"{p}/w_zero_point"],
            [f"{p}/wd"],
            f"{p}/DequantizeLinear_w",
            axis=0,
        ),
        # [Cout/g, Cin/g] with its scale on axis 0, transposed for the MatMul: the form torch
        # exports for nn.Linear, which TensorRT's rules and ORT's fusion both accept.
        helper.make_node("Transpose", [f"{p}/wd"], [f"{p}/wt"], f"{p}/Transpose_w", perm=[1, 0]),
        helper.make_node("MatMul", [f"{p}/xd", f"{p}/wt"], [f"{p}/y"], f"{p}/MatMul"),
    ]
    out = f"{p}/y"
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), f"{p}/bias"))
        nodes.append(helper.make_node("Add", [out, f"{p}/bias"], [f"{p}/yb"], f"{p}/Add"))
        out = f"{p}/yb"
    return out, nodes, inits


def convs_to_matmuls(model: onnx.ModelProto) -> int:
    """Replace each quantized pointwise Conv by per-group `Q -> DQ -> MatMul` (see module doc).

    Returns the number of Conv nodes rewritten.
    """
    graph = model.graph
    idx = GraphIndex(graph)
    replaced: dict[int, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []
    sliced: dict[tuple, list[str]] = {}
    for position, conv in enumerate(graph.node):
        found = _match(idx, conv)
        if found is None:
            continue
        x_dq, weight, w_scale, bias = found
        groups = int(attr(conv, "group", 1))
        cout, cin_g = weight.shape[0], weight.shape[1]
        if cout % groups:
            continue
        cout_g = cout // groups
        base = conv.name or conv.output[0]
        x_scale, x_zero = (idx.constant(n) for n in x_dq.input[1:3])
        key = (x_dq.input[0], groups, cin_g)
        nodes: list[onnx.NodeProto] = []
        if key not in sliced:
            # One Transpose/Split per quantized tensor: SqueezeBERT's Q, K and V convolutions
            # read the same one, and each of their GEMMs gets its own DQ of the shared slices.
            sliced[key], nodes, new = _int8_slices(base, x_dq.input[0], groups, cin_g)
            inits += new
        outs = []
        for i, xq in enumerate(sliced[key]):
            rows = slice(i * cout_g, (i + 1) * cout_g)
            out, new_nodes, new = _group_gemm(
                f"{base}/g{i}",
                xq,
                x_scale,
                x_zero,
                weight[rows],
                w_scale[rows],
                None if bias is None else bias[rows],
            )
            outs.append(out)
            nodes += new_nodes
            inits += new
        joined = outs[0]
        if groups > 1:
            joined = f"{base}/y"
            nodes.append(helper.make_node("Concat", outs, [joined], f"{base}/Concat", axis=2))
        nodes.append(
            helper.make_node(
                "Transpose", [joined], [conv.output[0]], f"{base}/TransposeBack", perm=[0, 2, 1]
            )
        )
        replaced[position] = nodes
    if not replaced:
        return 0
    new_nodes: list[onnx.NodeProto] = []
    for position, node in enumerate(graph.node):
        new_nodes.extend(replaced.get(position, [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(inits)
    prune_unused(model)
    return len(replaced)
