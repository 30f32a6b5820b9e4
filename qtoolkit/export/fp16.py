"""fp16 conversion of a QDQ ONNX graph, for TensorRT 11's strongly typed networks.

TensorRT 11 builds exactly the precision the ONNX states, so a "mixed INT8 + fp16" engine needs
an ONNX whose non-quantized parts are fp16. pytorch-quantization cannot export fake quant with
fp16 inputs, so the model is exported in fp32 and converted here, on the graph:

* every float tensor becomes fp16, except around the ops in `keep_fp32`: QuantizeLinear /
  DequantizeLinear (scales stay fp32; a Cast feeds each Q and follows each DQ), LayerNormalization
  and Softmax (their statistics need fp32);
* constants are clamped to fp16's range (a -3.4e38 attention-mask fill becomes -65504);
* graph outputs keep their names and stay fp32 (a final Cast), so callers see no difference.

The logic is in the style of onnxconverter-common's `convert_float_to_float16` (written here, no
dependency): decide a precision per node, then insert one shared Cast per tensor that crosses
between fp32 and fp16 nodes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["KEEP_FP32_OPS", "convert_to_fp16"]

KEEP_FP32_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "LayerNormalization", "Softmax"})
FP16_MAX = float(np.finfo(np.float16).max)
_FLOAT = TensorProto.FLOAT
_HALF = TensorProto.FLOAT16
# Tensors at most this large are kept in the copy used for type inference (shape constants).
_INFER_KEEP_BYTES = 4096
# Ops that read only the shape of a tensor: their input needs no Cast.
_SHAPE_READERS = frozenset({"Shape", "Size"})


def _to_fp16_array(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    clipped = np.where(finite, np.clip(values, -FP16_MAX, FP16_MAX), values)
    return clipped.astype(np.float16)


_SCALAR_CONSTANTS = {
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
}


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Constant nodes become initializers (one code path for both)."""
    keep = []
    for node in graph.node:
        tensor = None
        if node.op_type == "Constant" and len(node.attribute) == 1:
            a = node.attribute[0]
            if a.name == "value":
                tensor = onnx.TensorProto()
                tensor.CopyFrom(a.t)
            elif a.name in _SCALAR_CONSTANTS:
                value = onnx.helper.get_attribute_value(a)
                tensor = numpy_helper.from_array(np.asarray(value, _SCALAR_CONSTANTS[a.name]))
        if tensor is not None:
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, by shape inference on a copy without the big weights."""
    light = onnx.ModelProto()
    light.CopyFrom(model)
    graph = light.graph
    small = []
    for t in graph.initializer:
        if len(t.raw_data) <= _INFER_KEEP_BYTES:
            small.append(t)
        else:
            graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del graph.initializer[:]
    graph.initializer.extend(small)
    del graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False).graph
    types: dict[str, int] = {}
    for vi in [*inferred.input, *inferred.output, *inferred.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in model.graph.initializer:
        types[t.name] = t.data_type
    return types


def convert_to_fp16(
    model: onnx.ModelProto, keep_fp32: frozenset[str] = KEEP_FP32_OPS
) -> onnx.ModelProto:
    """Return an fp16 copy of `model` with `keep_fp32` ops (and Q/DQ scales) left in fp32."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    _constants_to_initializers(graph)
    types = _elem_types(out)
    inits = {t.name: t for t in graph.initializer}
    keep = [n.op_type in keep_fp32 for n in graph.node]
    half_inits: dict[str, str] = {}
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    # Tensors that are fp16 after conversion: float outputs of converted nodes.
    half = {
        o
        for n, k in zip(graph.node, keep, strict=True)
        if not k
        for o in n.output
        if types.get(o) == _FLOAT
    }

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            suffix = "fp16" if to == _HALF else "fp32"
            casts[key] = f"{name}/cast_{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], name=casts[key], to=to))
        return casts[key]

    def half_initializer(name: str) -> str:
        if name not in half_inits:
            values = _to_fp16_array(numpy_helper.to_array(inits[name]))
            half_inits[name] = f"{name}/fp16"
            new_inits.append(numpy_helper.from_array(values, half_inits[name]))
        return half_inits[name]

    for node, kept in zip(list(graph.node), keep, strict=True):
        for i, name in enumerate(node.input):
            if not name or types.get(name) != _FLOAT or node.op_type in _SHAPE_READERS:
                continue
            if kept and name in half:
                node.input[i] = cast(name, _FLOAT)
            elif not kept and name in inits:
                node.input[i] = half_initializer(name)
            elif not kept and name not in half:
                node.input[i] = cast(name, _HALF)  # from a kept node or a float graph input
        if not kept:
            _retype_attributes(node)
        new_nodes.append(node)

    # Graph outputs keep their names and fp32: the producer writes an fp16 tensor, a Cast
    # restores the name.
    for output in graph.output:
        if output.name in half:
            internal = f"{output.name}/fp16"
            for node in new_nodes:
                for i, name in enumerate(node.output):
                    if name == output.name:
                        node.output[i] = internal
                for i, name in enumerate(node.input):
                    if name == output.name:
                        node.input[i] = internal
            new_nodes.append(
                helper.make_node(
                    "Cast", [internal], [output.name], name=f"{internal}/out", to=_FLOAT
                )
            )
    del graph.node[:]
    graph.node.extend(_toposort(new_nodes, graph))
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    keep_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    del graph.value_info[:]
    return out


def _retype_attributes(node: onnx.NodeProto) -> None:
    """Attributes that name or hold a float type move to fp16 with the node."""
    for a in node.attribute:
        if node.op_type == "Cast" and a.name == "to" and a.i == _FLOAT:
            a.i = _HALF
        elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == _FLOAT:
            values = _to_fp16_array(numpy_helper.to_array(a.t))
            a.t.CopyFrom(numpy_helper.from_array(values, a.t.name))


def _toposort(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Order nodes so each comes after the producers of its inputs (Casts were appended)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {""}
    pending = list(nodes)
    ordered: list[onnx.NodeProto] = []
    produced_by = {o: n for n in nodes for o in n.output}
    while pending:
        progressed = False
        rest = []
        for node in pending:
            if all(i in available or i not in produced_by for i in node.input):
                ordered.append(node)
                available.update(node.output)
                progressed = True
            else:
                rest.append(node)
        if not progressed:  # a cycle cannot happen; keep the rest as is rather than loop
            ordered.extend(rest)
            break
        pending = rest
    return ordered
