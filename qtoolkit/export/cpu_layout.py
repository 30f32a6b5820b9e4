"""The CPU (`export.target: onnxruntime`) Q/DQ layout: what ONNX Runtime and OpenVINO fuse.

Passes after the common ones (`qdq_passes.optimize_qdq` runs them):

1. `convs_to_matmuls`: pointwise (grouped) convolutions as per-group MatMuls (conv_matmul.py),
   then `keep_grouped_layout`: where the next GEMM has the same groups (SqueezeBERT's FFN),
   GELU and its quantizer run in the grouped layout, without the views back and forth
   (grouped_chain.py).
2. `split_shared_qdq(share_quantize=True)`: one QuantizeLinear per tensor, one DequantizeLinear
   per consumer (ORT fuses `DQ -> MatMul` only when that DQ has one consumer).
3. `uint8_activations`: activation Q/DQ in uint8 with zero point 128 instead of int8 with 0.

Why uint8 (measured with onnxruntime 1.32 on an x86 Xeon): ORT's CPU kernels want uint8
activations, and its `QDQS8ToU8` pass converts an int8 `Q -> DQ` only where the Q feeds exactly
one DQ directly. A Q shared by several DQs, or `Q -> Transpose/Split -> DQ`, stays int8 and then
the MatMul is not fused at all (it runs in float). With uint8 from the start, one Q can feed
many DQs and data-movement ops may sit between them, and every MatMul still becomes
`MatMulIntegerToFloat`. The change is exact: `round(x / s) + 128` clipped to [0, 255] is the
int8 value clipped to [-128, 127] plus 128, and `(u - 128) * s` dequantizes it to the same
float. TensorRT needs int8 with zero point 0, so this layout is for CPU runtimes; the `tensorrt`
layout keeps int8.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from qtoolkit.export.graph import GraphIndex, prune_unused

__all__ = [
    "UINT8_ZERO_POINT",
    "DATA_MOVEMENT_OPS",
    "uint8_activations",
    "is_uint8_activation",
]

UINT8_ZERO_POINT = 128
# Ops that carry quantized bytes unchanged between a Q and its DQs in the CPU layout.
DATA_MOVEMENT_OPS = frozenset({"Transpose", "Split", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


def _dq_reach(idx: GraphIndex, name: str) -> list[onnx.NodeProto] | None:
    """Every DQ fed by `name` through data-movement ops, or None if anything else reads it."""
    found: list[onnx.NodeProto] = []
    stack = [name]
    while stack:
        tensor = stack.pop()
        if tensor in idx.graph_outputs:
            return None
        for consumer in idx.consumers[tensor]:
            if consumer.op_type == "DequantizeLinear" and consumer.input[0] == tensor:
                found.append(consumer)
            elif consumer.op_type in DATA_MOVEMENT_OPS and consumer.input[0] == tensor:
                stack.extend(consumer.output)
            else:
                return None
    return found


def uint8_activations(model: onnx.ModelProto) -> int:
    """Turn each int8 activation `Q (zero point 0)` and its DQs into uint8 with zero point 128.

    Weights (constant DQ inputs) stay int8. Returns the number of Q nodes converted.
    """
    graph = model.graph
    idx = GraphIndex(graph)
    inits: list[onnx.TensorProto] = []
    converted = 0
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or idx.is_constant(q.input[0]):
            continue
        zero_point = idx.constant(q.input[2])
        if zero_point is None or zero_point.dtype != np.int8 or zero_point.any():
            continue
        dqs = _dq_reach(idx, q.output[0])
        if not dqs or any(len(dq.input) < 3 for dq in dqs):
            continue
        # Own zero-point initializer per node, so ORT's common-subexpression pass cannot merge
        # the per-consumer DQs back into one.
        for k, node in enumerate([q, *dqs]):
            name = f"{q.output[0]}/zero_point_u8/{k}"
            inits.append(
                numpy_helper.from_array(np.full(zero_point.shape, UINT8_ZERO_POINT, np.uint8), name)
            )
            node.input[2] = name
        converted += 1
    graph.initializer.extend(inits)
    if converted:
        prune_unused(model)
    return converted


def is_uint8_activation(idx: GraphIndex, node: onnx.NodeProto) -> bool:
    """A Q/DQ of a non-constant tensor in the CPU layout's uint8 form (zero point 128)."""
    if len(node.input) < 3 or idx.is_constant(node.input[0]):
        return False
    zero_point = idx.constant(node.input[2])
    return (
        zero_point is not None
        and zero_point.dtype == np.uint8
        and bool(np.all(zero_point == UINT8_ZERO_POINT))
    )


# Left in float on purpose: the pooler and classifier Gemms (one vector per example, a negligible
# share of the time). ORT fuses a quantized Gemm into QGemm only with an int32-quantized bias, and
# rewriting them as MatMul + Add does not help: ORT's MatMulAddFusion turns that back into a Gemm
# before its QDQ fusion runs (measured, onnxruntime 1.32).
