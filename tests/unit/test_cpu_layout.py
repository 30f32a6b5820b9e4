"""The CPU Q/DQ layout (`export.target: onnxruntime`) on tiny BERT and SqueezeBERT models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from qtoolkit.export import check_onnx, export_onnx
from qtoolkit.export.check import TARGET_METADATA_KEY
from qtoolkit.export.ort_optimize import ort_gemm_census
from qtoolkit.export.qdq_passes import (
    fold_weight_quantizers,
    remove_redundant_qdq,
    split_shared_qdq,
)
from qtoolkit.export.torch_export import export_model_proto
from qtoolkit.export.validate import ort_session
from qtoolkit.recipe import ExportConfig

from .test_export import _batch, _calibrated

# The pooler and classifier work on one vector per example; ORT keeps those Gemms in float
# (see cpu_layout.py). Every other GEMM-like node must run in INT8.
_HEAD_GEMMS = {"Gemm", "FusedGemm"}


@pytest.fixture(scope="module", params=["bert", "squeezebert"])
def exported(request, tiny_bert_dir, tiny_squeezebert_dir, tmp_path_factory):
    model_dir = {"bert": tiny_bert_dir, "squeezebert": tiny_squeezebert_dir}[request.param]
    loaded, batches = _calibrated(model_dir, lengths=(12, 20))
    out = tmp_path_factory.mktemp(f"cpu-{request.param}")
    cpu = export_onnx(loaded.model, out / "cpu.onnx", ExportConfig(target="onnxruntime"), batches)
    trt = export_onnx(loaded.model, out / "trt.onnx", ExportConfig(), batches)
    return request.param, loaded, batches, cpu, trt


def _outputs(path, batches) -> list[np.ndarray]:
    session = ort_session(path)
    names = {i.name for i in session.get_inputs()}
    return [
        session.run(None, {k: v.numpy() for k, v in b.items() if k in names})[0] for b in batches
    ]


def test_every_matmul_and_conv_runs_in_int8_after_orts_optimizer(exported):
    arch, loaded, _, cpu, trt = exported
    census = ort_gemm_census(cpu.path)
    assert set(census.float_by_op()) <= _HEAD_GEMMS, census.float_by_op()
    assert sum(census.float_by_op().values()) <= 2
    layers = loaded.model.config.num_hidden_layers
    # BERT: 6 linears and 2 attention matmuls a layer; SqueezeBERT: 6 pointwise convolutions,
    # each one batched int8 GEMM over its groups, and 2 attention matmuls.
    expected = layers * (6 + 2)
    if arch == "squeezebert":
        cfg = loaded.model.config
        assert max(cfg.q_groups, cfg.intermediate_groups, cfg.output_groups) > 1  # grouped
        assert cpu.convs_as_matmuls == 6 * layers
        # The TensorRT layout keeps its grouped convolutions.
        assert sum(n.op_type == "Conv" for n in onnx.load(trt.path).graph.node) == 6 * layers
    assert census.int8_gemms == expected, census.int8_by_op()
    assert cpu.ort_census is not None and cpu.ort_census.int8_gemms == expected
    assert "float GEMMs" in cpu.summary() and "QuantizeLinear" in cpu.summary()


def test_one_quantize_per_tensor_instead_of_one_per_consumer(exported):
    _, loaded, batches, cpu, _ = exported
    census = ort_gemm_census(cpu.path)
    # The previous CPU layout: an int8 Q/DQ pair per consumer.
    proto = export_model_proto(loaded.model, "sequence-classification", batches[0], 17)
    fold_weight_quantizers(proto)
    remove_redundant_qdq(proto)
    split_shared_qdq(proto, share_quantize=False)
    per_consumer = sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    assert census.quantize_nodes < per_consumer
    model = onnx.load(cpu.path)
    graph_qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len({q.input[0] for q in graph_qs}) == len(graph_qs)  # no tensor quantized twice


def test_outputs_match_pytorch_and_the_tensorrt_layout(exported):
    _, _, batches, cpu, trt = exported
    assert cpu.validation.passed and cpu.validation.max_abs_diff < 0.05
    # Same int8 values times the same scales: the layouts differ only in float summation order.
    more = [_batch(3, 9, 7), *batches]
    for a, b in zip(_outputs(cpu.path, more), _outputs(trt.path, more), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_check_accepts_uint8_activations_only_in_the_cpu_layout(exported):
    _, _, _, cpu, _ = exported
    assert cpu.violations == [] and check_onnx(cpu.path) == []
    model = onnx.load(cpu.path)
    zero_points = {
        t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.dims == []
    }
    assert any(v.dtype == np.uint8 and v == 128 for v in zero_points.values())
    for prop in model.metadata_props:
        if prop.key == TARGET_METADATA_KEY:
            prop.value = "tensorrt"
    rules = {v.rule for v in check_onnx(model)}
    assert rules == {"not-int8", "nonzero-zero-point"}


def test_openvino_runs_the_cpu_layout_like_onnx_runtime(exported, tmp_path):
    ov = pytest.importorskip("openvino")
    _, _, batches, cpu, _ = exported
    compiled = ov.Core().compile_model(str(cpu.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {p.get_any_name() for p in compiled.inputs}
    expected = _outputs(cpu.path, batches)
    for batch, ref in zip(batches, expected, strict=True):
        got = compiled({k: v.numpy() for k, v in batch.items() if k in names})[0]
        np.testing.assert_allclose(got, ref, atol=0.05)


@pytest.fixture(scope="module")
def same_groups_ffn(tmp_path_factory):
    """A tiny SqueezeBERT whose FFN convs have the same groups (as squeezebert-uncased: 4, 4)."""
    from transformers import SqueezeBertForSequenceClassification

    from ..conftest import _save_checkpoint, squeezebert_config

    model_dir = _save_checkpoint(
        tmp_path_factory.mktemp("tiny-squeezebert-ffn"),
        squeezebert_config(intermediate_groups=2, output_groups=2),
        SqueezeBertForSequenceClassification,
    )
    loaded, batches = _calibrated(model_dir, lengths=(12, 20))
    out = tmp_path_factory.mktemp("cpu-ffn")
    cpu = export_onnx(loaded.model, out / "cpu.onnx", ExportConfig(target="onnxruntime"), batches)
    trt = export_onnx(loaded.model, out / "trt.onnx", ExportConfig(), batches)
    return loaded, batches, cpu, trt


def test_gelu_between_same_group_convs_stays_in_the_grouped_layout(same_groups_ffn):
    loaded, batches, cpu, trt = same_groups_ffn
    layers = loaded.model.config.num_hidden_layers
    assert cpu.grouped_regions == layers
    model = onnx.load(cpu.path)
    producer = {o: n for n in model.graph.node for o in n.output}
    output_x = [
        n
        for n in model.graph.node
        if "/output/conv1d" in n.name and n.name.endswith("DequantizeLinear_x")
    ]
    assert len(output_x) == layers
    for dq in output_x:
        # The GELU's quantizer feeds the output conv's GEMM directly: no view in between.
        assert producer[dq.input[0]].op_type == "QuantizeLinear"
    census = ort_gemm_census(cpu.path)
    assert census.int8_gemms == layers * 8 and set(census.float_by_op()) <= _HEAD_GEMMS
    assert cpu.validation.passed
    more = [_batch(3, 9, 7), *batches]
    for a, b in zip(_outputs(cpu.path, more), _outputs(trt.path, more), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_grouped_layout_is_kept_only_where_the_groups_match(exported):
    arch, loaded, _, cpu, _ = exported
    if arch == "bert":
        assert cpu.grouped_regions == 0  # no grouped GEMMs at all
    else:
        cfg = loaded.model.config
        assert cfg.intermediate_groups != cfg.output_groups
        assert cpu.grouped_regions == 0


def _perms(model: onnx.ModelProto) -> list[list[int]]:
    return [
        list(onnx.helper.get_attribute_value(a))
        for n in model.graph.node
        if n.op_type == "Transpose"
        for a in n.attribute
        if a.name == "perm"
    ]


def test_squeezebert_hidden_states_run_as_batch_seq_channels(exported):
    arch, loaded, _, cpu, trt = exported
    model = onnx.load(cpu.path)
    if arch == "bert":  # no [B, C, S] tensors anywhere
        assert cpu.channels_last_transposes == 0 and cpu.merged_head_views == 0
        return
    layers = loaded.model.config.num_hidden_layers
    # No LayerNorm Transposes and no encoder permutes are left; Q, K and V each reach HF's
    # head layout through one 5-D Transpose.
    assert [0, 2, 1] not in _perms(model)
    assert cpu.merged_head_views == 3 * layers
    assert sum(len(p) == 5 for p in _perms(model)) == 3 * layers
    producer = {o: n for n in model.graph.node for o in n.output}
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    # Every LayerNorm (2 a layer and the embeddings') reads its residual Add directly.
    assert sum(producer[n.input[0]].op_type == "Add" for n in norms) == 2 * layers + 1
    assert cpu.channels_last_transposes > 0


def _swap_graph(extra_output: bool = False) -> onnx.ModelProto:
    """x [B, S, 8] -> Transpose(0,2,1) -> Q/DQ -> Relu -> Transpose(0,2,1) -> y."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("QuantizeLinear", ["xt", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 8])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ["b", 8, "s"]))
    graph = helper.make_graph(
        nodes, "swap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 8])],
        outputs, inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_channels_last_flips_a_closed_region_and_leaves_an_open_one():
    import onnxruntime as ort

    from qtoolkit.export.channels_last import channels_last

    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype(np.float32)

    def run(model):
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {"x": x})

    closed = _swap_graph()
    expected = run(closed)
    assert channels_last(closed) == 2
    assert _perms(closed) == []
    np.testing.assert_array_equal(run(closed)[0], expected[0])
    # A [B, C, S] graph output would change meaning: the region is left as it is.
    open_ = _swap_graph(extra_output=True)
    assert channels_last(open_) == 0
    assert _perms(open_) == [[0, 2, 1], [0, 2, 1]]
