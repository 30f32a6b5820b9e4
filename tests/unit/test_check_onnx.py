"""TensorRT-readiness check on hand-built graphs: one clean graph, then one break per rule."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qtoolkit.errors import QtoolError
from qtoolkit.export import check_onnx, format_violations
from qtoolkit.export.check import RULES, check_model_proto
from qtoolkit.recipe import QuantConfig

H = 8


class Block:
    """A BERT-like block: quantized linear, Q.K^T-style and probs.V-style matmuls, residual
    Add into LayerNorm. Each flag breaks one rule."""

    def __init__(self, **breaks):
        self.breaks = breaks
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def qdq(self, x, name, zero_point=None, axis=None):
        scale = self.const(f"{name}.scale", np.float32(0.05))
        zp = self.const(f"{name}.zp", np.int8(0) if zero_point is None else zero_point)
        kw = {} if axis is None else {"axis": axis}
        self.nodes.append(
            helper.make_node(
                "QuantizeLinear", [x, scale, zp], [f"{name}.q"], name=f"{name}/Q", **kw
            )
        )
        self.nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}.q", scale, zp],
                [f"{name}.dq"],
                name=f"{name}/DQ",
                **kw,
            )
        )
        return f"{name}.dq"

    def node(self, op, inputs, name, **kw):
        self.nodes.append(helper.make_node(op, inputs, [f"{name}.out"], name=name, **kw))
        return f"{name}.out"

    def build(self, opset: int = 17, metadata: dict | None = None) -> onnx.ModelProto:
        b = self.breaks
        x_zp = np.uint8(0) if b.get("uint8") else np.int8(3 if b.get("nonzero_zp") else 0)
        x = "X" if b.get("unquantized_linear_input") else self.qdq("X", "x", zero_point=x_zp)
        # Linear: int8 weight [out, in] -> DQ (per output channel) -> Transpose -> MatMul.
        w = self.const("w", np.ones((H, H), np.int8))
        ws = self.const("w.scale", np.full(H, 0.01, np.float32))
        wz = self.const("w.zp", np.zeros(H, np.int8))
        axis = 1 if b.get("weight_axis") else 0
        self.nodes.append(
            helper.make_node("DequantizeLinear", [w, ws, wz], ["w.dq"], name="w/DQ", axis=axis)
        )
        wt = self.node("Transpose", ["w.dq"], "linear/Transpose", perm=[1, 0])
        y = self.node("MatMul", [x, wt], "linear/MatMul")
        y = self.node("Add", [y, self.const("bias", np.zeros(H, np.float32))], "linear/Add")
        # Q.K^T: both activations, one through a Transpose (TensorRT looks through it).
        q = self.qdq(y, "q")
        k = self.node("Transpose", [self.qdq("X", "k")], "k/Transpose", perm=[0, 2, 1])
        scores = self.node("MatMul", [q, k], "scores/MatMul")
        probs = self.node("Softmax", [scores], "Softmax", axis=-1)
        probs = probs if b.get("unquantized_attention") else self.qdq(probs, "probs")
        ctx = self.node("MatMul", [probs, self.qdq("X", "v")], "context/MatMul")
        # Residual add of the block output and the block input, into LayerNorm.
        if b.get("unquantized_residual"):
            local, residual = ctx, "X"
        else:
            local, residual = self.qdq(ctx, "add_local"), self.qdq("X", "add_residual")
        out = self.node("Add", [local, residual], "output/Add")
        gamma = self.const("ln.gamma", np.ones(H, np.float32))
        beta = self.const("ln.beta", np.zeros(H, np.float32))
        self.nodes.append(
            helper.make_node("LayerNormalization", [out, gamma, beta], ["Y"], name="LN")
        )
        if b.get("integer_op"):
            self.nodes.append(
                helper.make_node("MatMulInteger", ["x.q", w], ["Z"], name="legacy/MatMulInteger")
            )
        graph = helper.make_graph(
            self.nodes,
            "block",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4, H])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 4, H])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        for key, value in (metadata or {}).items():
            model.metadata_props.add(key=key, value=value)
        return model


def rules(violations):
    return sorted({v.rule for v in violations})


def test_clean_graph_passes():
    model = Block().build()
    onnx.checker.check_model(model)
    assert check_model_proto(model, QuantConfig()) == []
    assert format_violations([]) == "TensorRT-ready: no violations"


def test_opset_below_13():
    found = check_model_proto(Block().build(opset=12), QuantConfig())
    assert rules(found) == ["opset-below-13"]
    assert "opset 12" in found[0].message


def test_nonzero_zero_point():
    found = check_model_proto(Block(nonzero_zp=True).build(), QuantConfig())
    assert rules(found) == ["nonzero-zero-point"]
    assert {(v.node, v.op) for v in found} == {
        ("x/Q", "QuantizeLinear"),
        ("x/DQ", "DequantizeLinear"),
    }


def test_uint8_quantization_is_not_int8():
    found = check_model_proto(Block(uint8=True).build(), QuantConfig())
    assert rules(found) == ["not-int8"]
    assert {v.node for v in found} == {"x/Q", "x/DQ"}
    assert "uint8" in found[0].message


def test_quantize_without_zero_point_is_uint8():
    model = Block().build()
    q = next(n for n in model.graph.node if n.name == "x/Q")
    del q.input[2]
    found = check_model_proto(model, QuantConfig())
    assert [(v.node, v.rule) for v in found] == [("x/Q", "not-int8")]


def test_weight_scale_not_on_axis_0():
    found = check_model_proto(Block(weight_axis=True).build(), QuantConfig())
    assert [(v.node, v.op, v.rule) for v in found] == [
        ("w/DQ", "DequantizeLinear", "weight-axis-not-0")
    ]


def test_integer_operators_are_rejected():
    found = check_model_proto(Block(integer_op=True).build(), QuantConfig())
    assert [(v.node, v.op, v.rule) for v in found] == [
        ("legacy/MatMulInteger", "MatMulInteger", "integer-operator")
    ]


def test_linear_input_without_dq():
    model = Block(unquantized_linear_input=True).build()
    found = check_model_proto(model, QuantConfig())
    assert [(v.node, v.rule) for v in found] == [("linear/MatMul", "gemm-input-not-quantized")]
    assert "input 0 ('X')" in found[0].message
    # A config that leaves linears in float (or skips this module) expects no Q/DQ there.
    assert check_model_proto(model, QuantConfig(linear=False)) == []
    assert check_model_proto(model, QuantConfig(skip=["linear"])) == []


def test_attention_matmul_input_without_dq():
    model = Block(unquantized_attention=True).build()
    found = check_model_proto(model, QuantConfig())
    assert [(v.node, v.rule) for v in found] == [("context/MatMul", "gemm-input-not-quantized")]
    assert check_model_proto(model, QuantConfig(attention_matmul=False)) == []


def test_residual_add_without_qdq():
    model = Block(unquantized_residual=True).build()
    # Default placement (residual_inputs: residual): the skip input must be quantized.
    found = check_model_proto(model, QuantConfig())
    assert [(v.node, v.rule) for v in found] == [("output/Add", "residual-add-not-quantized")]
    assert "skip input 1 ('X')" in found[0].message
    # QDQBERT's placement (both): the GEMM output too.
    found = check_model_proto(model, QuantConfig(residual_inputs="both"))
    assert [v.message.split(" has no")[0] for v in found] == [
        "GEMM-output input 0 ('context/MatMul.out')",
        "skip input 1 ('X')",
    ]
    assert check_model_proto(model, QuantConfig(residual_add=False)) == []
    assert check_model_proto(model, QuantConfig(skip=["*.add_residual_input_quantizer"])) == []


def test_residual_add_with_only_the_skip_input_quantized():
    block = Block()
    model = block.build()
    add = next(n for n in model.graph.node if n.name == "output/Add")
    add.input[0] = "context/MatMul.out"  # drop the Q/DQ on the GEMM output
    assert check_model_proto(model, QuantConfig()) == []
    found = check_model_proto(model, QuantConfig(residual_inputs="both"))
    assert [(v.node, v.rule) for v in found] == [("output/Add", "residual-add-not-quantized")]


def test_conv_input_without_dq():
    w = numpy_helper.from_array(np.ones((4, 2, 1), np.int8), "w")
    s = numpy_helper.from_array(np.full(4, 0.1, np.float32), "s")
    z = numpy_helper.from_array(np.zeros(4, np.int8), "z")
    nodes = [
        helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"], name="w/DQ", axis=0),
        helper.make_node("Conv", ["X", "wd"], ["Y"], name="conv1d/Conv", group=2),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, 3])],
        [w, s, z],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    found = check_model_proto(model, QuantConfig())
    assert [(v.node, v.op, v.rule) for v in found] == [
        ("conv1d/Conv", "Conv", "gemm-input-not-quantized")
    ]
    assert check_model_proto(model, QuantConfig(conv1d=False)) == []


def test_without_a_config_only_half_quantized_gemms_are_flagged():
    # No config: the float residual Add is not judged, the float-input linear is half quantized.
    found = check_model_proto(
        Block(unquantized_linear_input=True, unquantized_residual=True).build()
    )
    assert [(v.node, v.rule) for v in found] == [("linear/MatMul", "gemm-input-not-quantized")]


def test_config_is_read_from_model_metadata(tmp_path):
    meta = {"qtoolkit.quant": json.dumps(QuantConfig(residual_add=False).model_dump(mode="json"))}
    path = tmp_path / "m.onnx"
    onnx.save(Block(unquantized_residual=True).build(metadata=meta), path)
    assert check_onnx(path) == []
    # An explicit config wins over the metadata.
    assert rules(check_onnx(path, QuantConfig())) == ["residual-add-not-quantized"]


def test_every_rule_is_documented_and_printed():
    found = check_model_proto(
        Block(nonzero_zp=True, weight_axis=True, integer_op=True).build(opset=12), QuantConfig()
    )
    assert set(rules(found)) <= set(RULES)
    text = format_violations(found)
    assert "[weight-axis-not-0] DequantizeLinear 'w/DQ'" in text
    assert text.splitlines()[-1].startswith(f"{len(found)} violation(s): ")


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(QtoolError, match="not found"):
        check_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(QtoolError, match="not a readable ONNX model"):
        check_onnx(bad)
