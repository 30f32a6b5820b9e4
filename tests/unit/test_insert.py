"""Quantizer insertion: every intended module and no other, weights untouched, identity when off."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtoolkit.models import load_model
from qtoolkit.quant import insert_quantizers, iter_quantizers
from qtoolkit.recipe import ModelConfig, QuantConfig

TASKS = ["sequence-classification", "question-answering", "token-classification", "masked-lm"]


def _load(path, task="sequence-classification"):
    return load_model(ModelConfig(path=str(path), task=task)).model


def _expected(model):
    """Independent census of what should be quantized, from the float model's module types."""
    from transformers.models.bert.modeling_bert import BertOutput, BertSelfAttention, BertSelfOutput
    from transformers.models.squeezebert.modeling_squeezebert import (
        ConvDropoutLayerNorm,
        MatMulWrapper,
    )

    exp = {"linear": set(), "conv1d": set(), "attention_matmul": set(), "residual_add": set()}
    for name, m in model.named_modules():
        if type(m) is nn.Linear:
            exp["linear"].add(name)
        elif type(m) is nn.Conv1d:
            exp["conv1d"].add(name)
        elif isinstance(m, (BertSelfAttention, MatMulWrapper)):
            exp["attention_matmul"].add(name)
        elif type(m) in (BertSelfOutput, BertOutput, ConvDropoutLayerNorm):
            exp["residual_add"].add(name)
    return exp


@pytest.mark.parametrize("residual_inputs", ["residual", "both"])
@pytest.mark.parametrize("task", TASKS)
def test_insertion_covers_exactly_the_intended_modules(tiny_dir, task, residual_inputs):
    from pytorch_quantization.nn import QuantConv1d, QuantLinear

    model = _load(tiny_dir, task)
    expected = _expected(model)
    params_before = {n: p for n, p in model.named_parameters()}
    report = insert_quantizers(model, QuantConfig(residual_inputs=residual_inputs))

    for group, names in expected.items():
        assert set(getattr(report, group)) == names, group
    for name in expected["linear"]:
        assert isinstance(model.get_submodule(name), QuantLinear)
    for name in expected["conv1d"]:
        assert isinstance(model.get_submodule(name), QuantConv1d)
    assert bool(expected["conv1d"]) == (model.config.model_type == "squeezebert")
    # 2 quantizers per GEMM/conv (input, weight), per attention matmul module (BERT: 4 per
    # self-attention, SqueezeBERT: 2 per MatMulWrapper), 1 or 2 per residual add.
    per_attention = 4 if model.config.model_type == "bert" else 2
    n_expected = (
        2 * len(expected["linear"])
        + 2 * len(expected["conv1d"])
        + per_attention * len(expected["attention_matmul"])
        + (2 if residual_inputs == "both" else 1) * len(expected["residual_add"])
    )
    assert len(list(iter_quantizers(model))) == n_expected
    # Same Parameter objects: weights copied exactly, tied weights still tied.
    for name, p in model.named_parameters():
        assert p is params_before[name]


def test_groups_can_be_switched_off_and_patterns_skip(tiny_bert_dir):
    model = _load(tiny_bert_dir)
    cfg = QuantConfig(attention_matmul=False, residual_add=False, skip=["classifier", "*.layer.1"])
    report = insert_quantizers(model, cfg)
    assert report.attention_matmul == [] and report.residual_add == []
    assert "classifier" in report.skipped_modules
    assert all(".layer.1." not in n for n in report.linear)
    assert any(".layer.0." in n for n in report.linear)
    assert type(model.classifier) is nn.Linear
    assert model.config._attn_implementation == "eager"


def test_pattern_can_disable_single_quantizers(tiny_bert_dir):
    model = _load(tiny_bert_dir)
    report = insert_quantizers(model, QuantConfig(skip=["*.matmul_a_input_quantizer"]))
    assert len(report.disabled_quantizers) == model.config.num_hidden_layers
    for name, q in iter_quantizers(model):
        assert q._disabled == name.endswith("matmul_a_input_quantizer")


def test_second_insertion_is_refused(tiny_bert_dir):
    from qtoolkit.errors import QtoolError

    model = _load(tiny_bert_dir)
    insert_quantizers(model, QuantConfig())
    with pytest.raises(QtoolError, match="already"):
        insert_quantizers(model, QuantConfig())


@pytest.mark.parametrize("task", ["sequence-classification", "masked-lm"])
def test_disabled_quantizers_reproduce_float_model_bit_for_bit(tiny_dir, sample_batch, task):
    ref = _load(tiny_dir, task)
    quant = _load(tiny_dir, task)
    insert_quantizers(quant, QuantConfig())
    for _, q in iter_quantizers(quant):
        q.disable()
    batch = dict(sample_batch)
    if ref.config.model_type == "squeezebert":
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        want = ref(**batch).logits
        got = quant(**batch).logits
    assert torch.equal(want, got)


def test_enabled_quantizers_change_outputs(tiny_bert_dir, sample_batch):
    """The check above could pass vacuously if quantizers were never called; this shows they are."""
    from qtoolkit.quant import calibrate
    from qtoolkit.recipe import CalibConfig

    ref = _load(tiny_bert_dir)
    quant = _load(tiny_bert_dir)
    insert_quantizers(quant, QuantConfig(num_bits=4))
    calibrate(quant, lambda m: m(**sample_batch), CalibConfig(method="max"))
    with torch.no_grad():
        diff = (ref(**sample_batch).logits - quant(**sample_batch).logits).abs().max()
    assert diff > 0


def test_swapped_modules_equal_the_real_constructors_without_inspect_stack(tiny_dir, monkeypatch):
    """insert_quantizers builds QuantLinear/QuantConv1d without `init_quantizer` (whose
    `inspect.stack()` cost ~0.1 s a module): the same modules as the library's constructors."""
    import inspect

    from pytorch_quantization.nn import QuantConv1d, QuantLinear

    from qtoolkit.quant.descriptors import input_descriptor, weight_descriptor

    model = _load(tiny_dir)
    originals = {n: m for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv1d)}

    def no_stack(*args, **kwargs):
        raise AssertionError("inspect.stack() called while inserting quantizers")

    with monkeypatch.context() as m:
        m.setattr(inspect, "stack", no_stack)
        insert_quantizers(model, QuantConfig())
    cfg = QuantConfig()
    descs = {"quant_desc_input": input_descriptor(cfg), "quant_desc_weight": weight_descriptor(cfg)}
    assert originals
    for name, float_module in originals.items():
        built = model.get_submodule(name)
        if isinstance(float_module, nn.Linear):
            real = QuantLinear(
                float_module.in_features, float_module.out_features, bias=True, **descs
            )
        else:
            c = float_module
            real = QuantConv1d(
                c.in_channels,
                c.out_channels,
                c.kernel_size,
                stride=c.stride,
                padding=c.padding,
                dilation=c.dilation,
                groups=c.groups,
                **descs,
            )
        assert type(built) is type(real) and repr(built) == repr(real), name
        assert built._fake_quant is real._fake_quant is True
        for q in ("_input_quantizer", "_weight_quantizer"):
            assert repr(getattr(built, q)) == repr(getattr(real, q)), (name, q)
        got = {k: (v.shape, v.dtype) for k, v in built.state_dict().items()}
        want = {k: (v.shape, v.dtype) for k, v in real.state_dict().items()}
        assert got == want, name
        assert set(built.__dict__) == set(real.__dict__), name  # the same attributes set
