"""QDQ ONNX export of tiny calibrated BERT / SqueezeBERT models, validated in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from qtoolkit.errors import QtoolError
from qtoolkit.export import check_onnx, export_onnx, fp32_path_for, validate_onnx
from qtoolkit.export.graph import GraphIndex, attr
from qtoolkit.export.ort_optimize import ort_gemm_census
from qtoolkit.export.save import external_data_path, move_onnx, write_onnx
from qtoolkit.export.torch_export import fake_quant_onnx_mode
from qtoolkit.models import load_model
from qtoolkit.quant import calibrate, insert_quantizers, save_quantized
from qtoolkit.recipe import CalibConfig, ExportConfig, ModelConfig, QuantConfig

# Wider random init than the default 0.02, so logits are far from constant and comparisons of
# ONNX Runtime with PyTorch are meaningful. The tiny checkpoints' tokenizer maps every word to
# [UNK] under transformers 5, so batches are random token ids over a 120-token vocabulary.
INIT_RANGE = 0.2
VOCAB = 120


def _batch(rows: int, length: int, seed: int) -> dict:
    """Random ids with [CLS]=2 / [SEP]=3, right padding of varying length, two segments."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=gen)
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=gen)
    lengths[0] = length
    pos = torch.arange(length)
    mask = (pos[None, :] < lengths[:, None]).long()
    ids[:, 0] = 2
    ids[torch.arange(rows), lengths - 1] = 3
    ids = ids * mask
    token_types = ((pos[None, :] >= lengths[:, None] // 2) & mask.bool()).long()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}


def _calibrated(model_dir, task="sequence-classification", quant=None, lengths=(16, 16)):
    loaded = load_model(
        ModelConfig(
            path=str(model_dir),
            task=task,
            random_init=True,
            config_overrides={"initializer_range": INIT_RANGE, "vocab_size": VOCAB},
        )
    )
    insert_quantizers(loaded.model, quant or QuantConfig())
    batches = [_batch(4, n, seed) for seed, n in enumerate(lengths)]
    calibrate(loaded.model, lambda m: [m(**b) for b in batches], CalibConfig(method="max"))
    return loaded, batches


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    # Two batches of different shapes: the export must have dynamic batch/sequence axes.
    return _calibrated(tiny_bert_dir, lengths=(12, 20))


@pytest.fixture(scope="module")
def bert_export(bert, tmp_path_factory):
    loaded, batches = bert
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    return export_onnx(loaded.model, out, ExportConfig(fp32_baseline=True), batches)


def _dq_fed(idx: GraphIndex, name: str) -> bool:
    node = idx.producer_through(name, frozenset({"Transpose", "Reshape", "Cast"}))
    return node is not None and node.op_type == "DequantizeLinear"


def test_export_writes_validated_tensorrt_ready_qdq(bert_export):
    result = bert_export
    assert result.validation.passed and result.validation.num_examples == 8
    assert result.violations == [] and check_onnx(result.path) == []
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["model.fp32.onnx", "model.onnx"]
    summary = result.summary()
    assert (
        "TensorRT-ready: no violations" in summary and "model.fp32.onnx (float baseline)" in summary
    )

    model = onnx.load(result.path)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    for inp in model.graph.input:
        assert [d.dim_param for d in inp.type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert [o.name for o in model.graph.output] == ["logits"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["qtoolkit.task"] == "sequence-classification"

    idx = GraphIndex(model.graph)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq, "no Q/DQ in the export"
    for node in qdq:
        zero_point = idx.constant(node.input[2])
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        assert idx.constant(node.input[1]).dtype == np.float32
        # Weight quantization is folded: no QuantizeLinear of a constant is left.
        if node.op_type == "QuantizeLinear":
            assert not idx.is_constant(node.input[0]), node.name
    weights = [n for n in qdq if n.input[0] in idx.initializers]
    assert len(weights) == result.folded_weights == 2 * 6 + 2  # 6 linears a layer, pooler, head
    for node in weights:
        w, scale = idx.constant(node.input[0]), idx.constant(node.input[1])
        assert w.dtype == np.int8 and attr(node, "axis", 1) == 0
        assert scale.shape == (w.shape[0],)  # per output channel
    # Every GEMM is quantized on both inputs: linears, Q.K^T and probs.V.
    gemms = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert len(gemms) == 2 * (6 + 2) + 2
    assert all(_dq_fed(idx, i) for n in gemms for i in n.input[:2])


def test_fake_quant_switch_is_off_after_export_and_after_errors(bert_export):
    from pytorch_quantization.nn import TensorQuantizer

    assert TensorQuantizer.use_fb_fake_quant is False
    with pytest.raises(RuntimeError), fake_quant_onnx_mode():
        assert TensorQuantizer.use_fb_fake_quant is True
        raise RuntimeError("export failed")
    assert TensorQuantizer.use_fb_fake_quant is False


def test_dynamic_batch_and_sequence(bert_export):
    from qtoolkit.export.validate import ort_session

    session = ort_session(bert_export.path)
    rng = np.random.default_rng(0)
    for batch, seq in [(1, 5), (3, 33)]:
        feed = {
            "input_ids": rng.integers(5, VOCAB, (batch, seq)),
            "attention_mask": np.ones((batch, seq), np.int64),
            "token_type_ids": np.zeros((batch, seq), np.int64),
        }
        (logits,) = session.run(None, feed)
        assert logits.shape == (batch, 2) and np.isfinite(logits).all()


def test_fp32_baseline_is_the_float_model(bert, bert_export):
    path = bert_export.fp32_path
    assert path == fp32_path_for(bert_export.path) and path.name == "model.fp32.onnx"
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert bert_export.fp32_validation.max_abs_diff < 1e-4
    # ...and the float model really differs from the quantized one on the same inputs.
    with pytest.raises(QtoolError, match="ONNX validation failed"):
        validate_onnx(path, bert[0].model, bert[1], atol=1e-4, min_argmax_agreement=0.0)


def test_onnxruntime_target_puts_every_transformer_matmul_in_int8(bert, bert_export, tmp_path):
    loaded, batches = bert
    result = export_onnx(
        loaded.model, tmp_path / "ort.onnx", ExportConfig(target="onnxruntime"), batches
    )
    assert result.validation.passed and result.violations == [] and result.split_pairs > 0
    # Each DequantizeLinear has one consumer: what ORT's QDQ fusion needs.
    idx = GraphIndex(onnx.load(result.path).graph)
    dqs = [n for n in idx.graph.node if n.op_type == "DequantizeLinear"]
    assert all(len(idx.consumers[n.output[0]]) == 1 for n in dqs)
    ort_layout = ort_gemm_census(result.path)
    trt_layout = ort_gemm_census(bert_export.path)
    # Only the pooler and classifier Gemms (on one vector per example) stay in float.
    assert ort_layout.float_by_op().get("MatMul", 0) == 0
    assert ort_layout.int8_gemms == 2 * 6 + 2 * 2
    assert trt_layout.float_by_op().get("MatMul", 0) > 0  # shared Q/DQ blocks ORT's fusion


def test_fp16_export_keeps_qdq_layernorm_softmax_in_fp32(bert, tmp_path):
    loaded, batches = bert
    # The tiny model's logit margins are >= 1 and fp16 moves logits by ~0.03, so every
    # decision must survive and the logits stay within 0.1 of the fake-quant model.
    cfg = ExportConfig(fp16=True, fp16_atol=0.1, min_argmax_agreement=1.0)
    result = export_onnx(loaded.model, tmp_path / "fp16.onnx", cfg, batches)
    assert result.validation.passed and result.violations == []
    assert result.validation.argmax_agreement == 1.0 and result.validation.max_abs_diff < 0.1
    model = onnx.load(result.path)
    idx = GraphIndex(model.graph)
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.output]}
    kept = ("QuantizeLinear", "LayerNormalization", "Softmax")
    for node in model.graph.node:
        if node.op_type in kept:
            assert types.get(node.input[0]) == TensorProto.FLOAT, node.name
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert idx.constant(node.input[1]).dtype == np.float32
        if node.op_type == "MatMul":
            assert types[node.output[0]] == TensorProto.FLOAT16, node.name
    big = [t for t in model.graph.initializer if np.prod(t.dims) > 1000]
    assert big and all(t.data_type in (TensorProto.FLOAT16, TensorProto.INT8) for t in big)
    # The -3.4e38 attention-mask fill is clamped into fp16's range, not turned into -inf.
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT16:
            assert np.isfinite(numpy_helper.to_array(tensor)).all(), tensor.name


def test_failed_validation_writes_nothing(bert, tmp_path):
    loaded, batches = bert
    out = tmp_path / "out" / "model.onnx"
    cfg = ExportConfig(fp16=True, fp16_atol=1e-7, fp32_baseline=True)
    with pytest.raises(QtoolError, match=r"ONNX validation failed: output 'logits' differs"):
        export_onnx(loaded.model, out, cfg, batches)
    assert list(out.parent.iterdir()) == []  # no model, no baseline, no temporary folder


def test_squeezebert_grouped_convs_export_and_validate(tiny_squeezebert_dir, tmp_path):
    loaded, batches = _calibrated(tiny_squeezebert_dir)
    result = export_onnx(loaded.model, tmp_path / "sq.onnx", ExportConfig(), batches)
    assert result.validation.passed and result.violations == []
    model = onnx.load(result.path)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    idx = GraphIndex(model.graph)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 * 6 and {attr(n, "group") for n in convs} == {2, 4}
    assert all(_dq_fed(idx, i) for n in convs for i in n.input[:2])


def test_question_answering_from_a_checkpoint_directory(tiny_bert_dir, tmp_path):
    quant = QuantConfig(skip=["qa_outputs", "*.layer.0.attention.self.matmul_a_input_quantizer"])
    loaded, batches = _calibrated(tiny_bert_dir, "question-answering", quant)
    ckpt = save_quantized(loaded.model, loaded.tokenizer, tmp_path / "ckpt", quant)
    # Tolerance as measured on real models (README of the export): a quantization step that
    # rounds differently in torch and ORT moves QA logits by a few hundredths.
    cfg = ExportConfig(opset=13, atol=0.25)
    result = export_onnx(ckpt, tmp_path / "qa.onnx", cfg, batches)
    assert result.task == "question-answering" and result.validation.passed
    model = onnx.load(result.path)
    assert [o.name for o in model.graph.output] == ["start_logits", "end_logits"]
    for out in model.graph.output:
        assert [d.dim_param for d in out.type.tensor_type.shape.dim] == ["batch", "sequence"]
    # Skipped parts are float, and the check (config from the model's metadata) expects that.
    assert result.violations == [] and check_onnx(result.path) == []
    assert check_onnx(result.path, QuantConfig()) != []
    idx = GraphIndex(model.graph)
    head = [n for n in model.graph.node if "qa_outputs" in n.name and n.op_type == "MatMul"]
    assert head and not any(_dq_fed(idx, i) for i in head[0].input)


def test_export_refuses_models_it_cannot_export(tiny_bert_dir, tmp_path):
    loaded = load_model(ModelConfig(path=str(tiny_bert_dir)))
    batch = [_batch(1, 8, 0)]
    with pytest.raises(QtoolError, match="no quantizers"):
        export_onnx(loaded.model, tmp_path / "m.onnx", ExportConfig(), batch)
    insert_quantizers(loaded.model, QuantConfig())
    with pytest.raises(QtoolError, match="has no amax: calibrate"):
        export_onnx(loaded.model, tmp_path / "m.onnx", ExportConfig(), batch)
    with pytest.raises(QtoolError, match="sample batches"):
        export_onnx(loaded.model, tmp_path / "m.onnx", ExportConfig(), [])
    assert list(tmp_path.iterdir()) == []


def test_external_data_is_written_and_moved_whole(bert_export, tmp_path):
    from qtoolkit.export.validate import ort_session

    model = onnx.load(bert_export.path)
    staged = write_onnx(model, tmp_path / "stage" / "big.onnx", external_threshold=0)
    header = onnx.load(staged, load_external_data=False)
    weights = [t for t in header.graph.initializer if np.prod(t.dims) >= 1024]  # int8: bytes
    assert weights and all(t.data_location == TensorProto.EXTERNAL for t in weights)
    assert external_data_path(staged).stat().st_size > sum(np.prod(t.dims) for t in weights)
    final = move_onnx(staged, tmp_path / "final" / "big.onnx")
    assert sorted(p.name for p in final.parent.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert [o.name for o in ort_session(final).get_outputs()] == ["logits"]
    # Re-exporting small to the same path removes the stale weights file.
    write_onnx(model, final)
    assert sorted(p.name for p in final.parent.iterdir()) == ["big.onnx"]


def test_convert_to_fp16_on_a_hand_built_graph(tmp_path):
    from onnx import helper

    from qtoolkit.export import convert_to_fp16
    from qtoolkit.export.validate import ort_session

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.float32(0.02), "s"),
        numpy_helper.from_array(np.int8(0), "z"),
        numpy_helper.from_array(rng.integers(-127, 128, (8, 8)).astype(np.int8), "w"),
        numpy_helper.from_array(np.full(8, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
        numpy_helper.from_array(np.float32(np.finfo(np.float32).min), "fill"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["X", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Transpose", ["wd"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["xd", "wt"], ["y"]),
        helper.make_node("Constant", [], ["one"], value_float=1.0),
        helper.make_node("Add", ["y", "one"], ["y1"]),
        helper.make_node("Where", ["M", "y1", "fill"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["Y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 8]),
            helper.make_tensor_value_info("M", TensorProto.BOOL, [2, 8]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    by_output = {n.output[0]: n for n in half.graph.node}
    softmax = next(n for n in half.graph.node if n.op_type == "Softmax")
    cast_in = by_output[softmax.input[0]]  # Where runs in fp16, Softmax gets an fp32 Cast
    assert cast_in.op_type == "Cast" and attr(cast_in, "to") == TensorProto.FLOAT
    fill = next(t for t in half.graph.initializer if t.name.startswith("fill"))
    assert fill.data_type == TensorProto.FLOAT16
    assert numpy_helper.to_array(fill) == -np.finfo(np.float16).max  # clamped, not -inf
    feed = {"X": rng.normal(size=(2, 8)).astype(np.float32), "M": rng.random((2, 8)) > 0.3}
    feed["M"][:, 0] = True
    with_fp32, with_fp16 = [], []
    for i, (proto, out) in enumerate(((model, with_fp32), (half, with_fp16))):
        path = tmp_path / f"m{i}.onnx"
        onnx.save(proto, path)
        out.append(ort_session(path).run(None, feed)[0])
    assert with_fp16[0].dtype == np.float32
    np.testing.assert_allclose(with_fp16[0], with_fp32[0], atol=2e-3)
