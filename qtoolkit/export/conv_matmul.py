"""Rewrite quantized 1x1 (grouped) convolutions as integer-friendly MatMuls, for CPU runtimes.

SqueezeBERT's position-wise layers are `Conv1d(kernel_size=1, groups=g)` on `[batch, C, seq]`.
ONNX Runtime turns `DQ -> Conv` into its integer kernel (QLinearConv) only when a QuantizeLinear
follows the Conv; SqueezeBERT's post-attention, intermediate and output convolutions feed a
residual add or GELU, so they ran in float (36 of 72 convolutions in INT8 at squeezebert-uncased
size). A MatMul needs no output Q: `DQ -> MatMul` becomes `MatMulIntegerToFloat`.

A 1x1 convolution with `g` groups is one batched GEMM over the groups:

    Q(x) [B, Cin, S] -> Reshape [B, g, Cin/g, S] -> Transpose [B, g, S, Cin/g]   (quantized data)
      -> DequantizeLinear
      -> MatMul(DQ(W [g, Cin/g, Cout/g] int8, scale 1))                 [B, g, S, Cout/g]
      -> Mul(per-output-channel weight scale [g, 1, Cout/g]) -> Add(bias [g, 1, Cout/g])
      -> Transpose [B, g, Cout/g, S] -> Reshape [B, Cout, S]

ORT's integer MatMul takes a per-column weight scale only for a 2-D weight, so the weight is
dequantized with scale 1 and its per-channel scale is applied to the output: `(x_q - z) s_x @
(W_q s_w)` equals `((x_q - z) s_x @ W_q) s_w` exactly, so the products are the same integers
times the same scales and outputs match the Conv form up to float summation order. Grouped
weights stay grouped: no block-diagonal expansion (which would cost g x FLOPs). One batched GEMM
replaces the earlier per-group GEMMs with their Split, Concat and per-group bias Adds, which on
ORT cost almost as much as the GEMMs they fed (see scripts/bench_cpu.py's profile).
ORT fuses `Q -> Reshape/Transpose -> DQ -> MatMul` only with uint8 activations (on x86 it turns
int8 Q/DQ into uint8 only where a Q feeds a DQ directly), so the CPU layout runs
`uint8_activations` after this pass.

Only the CPU layout (`export.target: onnxruntime`) uses this; the TensorRT layout keeps Conv.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qtoolkit.export.graph import (
    GraphIndex,
    attr,
    prune_unused,
    same_qdq_params,
    source_constant,
)

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
    bias = source_constant(idx, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if len(conv.input) > 2 and conv.input[2] and bias is None:
        return None
    return x_dq, weight, w_scale.astype(np.float32), bias


def _grouped_view(base: str, x_q: str, groups: int, width: int):
    """`x_q` [B, C, S] -> Reshape [B, g, C/g, S] -> Transpose [B, g, S, C/g].

    Returns the view's name, its nodes and their initializers."""
    shape = numpy_helper.from_array(np.array([0, groups, width, -1], np.int64), f"{base}/gshape")
    nodes = [
        helper.make_node("Reshape", [x_q, shape.name], [f"{base}/xg"], f"{base}/Reshape"),
        helper.make_node(
            "Transpose", [f"{base}/xg"], [f"{base}/xt"], f"{base}/Transpose", perm=[0, 1, 3, 2]
        ),
    ]
    return f"{base}/xt", nodes, [shape]


def _batched_gemm(
    p: str,
    xq: str,
    out: str,
    x_scale: np.ndarray,
    x_zero: np.ndarray,
    weight: np.ndarray,
    w_scale: np.ndarray,
    bias: np.ndarray | None,
    groups: int,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """`DQ(xq) @ W_q` per group, then the weight scale and bias per output channel into `out`."""
    cout, cin_g = weight.shape[0], weight.shape[1]

    def per_group(v: np.ndarray) -> np.ndarray:  # [Cout] -> [g, 1, Cout/g]
        return np.ascontiguousarray(v.reshape(groups, 1, cout // groups).astype(np.float32))

    w = weight[:, :, 0].reshape(groups, cout // groups, cin_g).transpose(0, 2, 1)
    # Own scale/zero-point initializers per DQ: ORT's common-subexpression pass would otherwise
    # merge DQs of one shared Q and break the one-consumer rule of its QDQ fusion.
    inits = [
        numpy_helper.from_array(x_scale.reshape(()).astype(np.float32), f"{p}/x_scale"),
        numpy_helper.from_array(x_zero.reshape(()), f"{p}/x_zero_point"),
        numpy_helper.from_array(np.ascontiguousarray(w), f"{p}/w"),
        numpy_helper.from_array(np.array(1.0, np.float32), f"{p}/w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), f"{p}/w_zero_point"),
        numpy_helper.from_array(np.array([0, cout, -1], np.int64), f"{p}/yshape"),
        numpy_helper.from_array(per_group(w_scale), f"{p}/channel_scale"),
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
        ),
        helper.make_node("MatMul", [f"{p}/xd", f"{p}/wd"], [f"{p}/y"], f"{p}/MatMul"),
        # Scale and bias on the GEMM's own output layout [B, g, S, Cout/g], then back to
        # [B, Cout, S]. With the Mul after the Reshape back, OpenVINO 2026.4 (f32) put the
        # SqueezeBERT logits 0.24 off while ONNX Runtime matched PyTorch
        # (test_openvino_runs_the_cpu_layout_like_onnx_runtime).
        helper.make_node("Mul", [f"{p}/y", f"{p}/channel_scale"], [f"{p}/ys"], f"{p}/Mul"),
    ]
    last = f"{p}/ys"
    if bias is not None:
        inits.append(numpy_helper.from_array(per_group(bias), f"{p}/bias"))
        nodes.append(helper.make_node("Add", [last, f"{p}/bias"], [f"{p}/yb"], f"{p}/Add"))
        last = f"{p}/yb"
    nodes += [
        helper.make_node("Transpose", [last], [f"{p}/yt"], f"{p}/TransposeBack", perm=[0, 1, 3, 2]),
        helper.make_node("Reshape", [f"{p}/yt", f"{p}/yshape"], [out], f"{p}/ReshapeBack"),
    ]
    return nodes, inits


def convs_to_matmuls(model: onnx.ModelProto) -> int:
    """Replace each quantized pointwise Conv by one batched `Q -> DQ -> MatMul` (module doc).

    Returns the number of Conv nodes rewritten.
    """
    graph = model.graph
    idx = GraphIndex(graph)
    replaced: dict[int, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []
    views: dict[tuple, str] = {}
    for position, conv in enumerate(graph.node):
        found = _match(idx, conv)
        if found is None:
            continue
        x_dq, weight, w_scale, bias = found
        groups = int(attr(conv, "group", 1))
        cout, cin_g = weight.shape[0], weight.shape[1]
        if cout % groups:
            continue
        base = conv.name or conv.output[0]
        x_scale, x_zero = (idx.constant(n) for n in x_dq.input[1:3])
        key = (x_dq.input[0], groups, cin_g)
        nodes: list[onnx.NodeProto] = []
        if key not in views:
            # One grouped view per quantized tensor: SqueezeBERT's Q, K and V convolutions read
            # the same one, and each of their GEMMs gets its own DQ of it.
            views[key], nodes, new = _grouped_view(base, x_dq.input[0], groups, cin_g)
            inits += new
        new_nodes, new = _batched_gemm(
            base, views[key], conv.output[0], x_scale, x_zero, weight, w_scale, bias, groups
        )
        replaced[position] = nodes + new_nodes
        inits += new
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
