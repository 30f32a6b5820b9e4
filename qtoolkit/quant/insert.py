"""Explicit quantizer insertion on a model instance (no global monkeypatching of torch.nn).

Four groups, each switchable in the recipe's `quant` section:

* `linear`: every `nn.Linear` becomes a `QuantLinear` (input per tensor, weight per row);
* `conv1d`: every `nn.Conv1d` (SqueezeBERT's grouped 1x1 convolutions) becomes a `QuantConv1d`;
* `attention_matmul`: both inputs of Q.K^T and probs.V (BERT through transformers' attention
  registry, SqueezeBERT by replacing its `MatMulWrapper`s);
* `residual_add`: both inputs of each residual add.

The swapped modules hold the *same* Parameter objects as the originals, so weights are copied
exactly and tied weights stay tied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn

from qtoolkit.errors import QtoolError
from qtoolkit.quant.descriptors import input_descriptor, new_input_quantizer, weight_descriptor
from qtoolkit.quant.modules import (
    ATTENTION_QUANTIZERS,
    QDQ_ATTENTION,
    QuantMatMul,
    register_qdq_attention,
    residual_class_for,
)
from qtoolkit.recipe import QuantConfig

__all__ = ["InsertReport", "insert_quantizers", "iter_quantizers", "is_quantized"]


@dataclass
class InsertReport:
    """Module names touched, per group, and the names left in float by `skip` patterns."""

    linear: list[str] = field(default_factory=list)
    conv1d: list[str] = field(default_factory=list)
    attention_matmul: list[str] = field(default_factory=list)
    residual_add: list[str] = field(default_factory=list)
    skipped_modules: list[str] = field(default_factory=list)
    disabled_quantizers: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "linear": len(self.linear),
            "conv1d": len(self.conv1d),
            "attention_matmul": len(self.attention_matmul),
            "residual_add": len(self.residual_add),
            "skipped": len(self.skipped_modules),
        }


def iter_quantizers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, TensorQuantizer) for every quantizer in the model."""
    from pytorch_quantization.nn import TensorQuantizer

    for name, module in model.named_modules():
        if isinstance(module, TensorQuantizer):
            yield name, module


def is_quantized(model: nn.Module) -> bool:
    return next(iter_quantizers(model), None) is not None


def _matches(name: str, patterns: list[str]) -> bool:
    """True when a pattern matches `name` or a parent of it ('layer.0' skips its children)."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(p, pat) for pat in patterns for p in prefixes)


def _quant_linear(module: nn.Linear, cfg: QuantConfig) -> nn.Module:
    from pytorch_quantization.nn import QuantLinear

    with torch.device("meta"):
        new = QuantLinear(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            quant_desc_input=input_descriptor(cfg),
            quant_desc_weight=weight_descriptor(cfg),
        )
    new.weight = module.weight
    new.bias = module.bias
    return new.train(module.training)


def _quant_conv1d(module: nn.Conv1d, cfg: QuantConfig) -> nn.Module:
    from pytorch_quantization.nn import QuantConv1d

    with torch.device("meta"):
        new = QuantConv1d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            quant_desc_input=input_descriptor(cfg),
            quant_desc_weight=weight_descriptor(cfg),
        )
    new.weight = module.weight
    new.bias = module.bias
    return new.train(module.training)


def _is_bert_attention(module: nn.Module) -> bool:
    from transformers.models.bert.modeling_bert import BertCrossAttention, BertSelfAttention

    return isinstance(module, (BertSelfAttention, BertCrossAttention))


def _is_matmul_wrapper(module: nn.Module) -> bool:
    from transformers.models.squeezebert.modeling_squeezebert import MatMulWrapper

    return type(module) is MatMulWrapper


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def insert_quantizers(model: nn.Module, cfg: QuantConfig) -> InsertReport:
    """Insert quantizers into `model` in place, per `cfg`. Returns what was touched."""
    from qtoolkit.models.registry import spec_for_config

    if is_quantized(model):
        raise QtoolError("model already has quantizers")
    spec_for_config(model.config)  # refuses architectures we have no placement rules for
    report = InsertReport()
    for name, module in list(model.named_modules()):
        if not name:
            continue
        kind = None
        if cfg.linear and type(module) is nn.Linear:
            kind = "linear"
        elif cfg.conv1d and type(module) is nn.Conv1d:
            kind = "conv1d"
        elif cfg.attention_matmul and (_is_bert_attention(module) or _is_matmul_wrapper(module)):
            kind = "attention_matmul"
        elif cfg.residual_add and residual_class_for(module) is not None:
            kind = "residual_add"
        if kind is None:
            continue
        if _matches(name, cfg.skip):
            report.skipped_modules.append(name)
            continue
        if kind == "linear":
            _replace(model, name, _quant_linear(module, cfg))
        elif kind == "conv1d":
            _replace(model, name, _quant_conv1d(module, cfg))
        elif kind == "attention_matmul" and _is_matmul_wrapper(module):
            _replace(model, name, QuantMatMul(new_input_quantizer(cfg), new_input_quantizer(cfg)))
        elif kind == "attention_matmul":
            for attr in ATTENTION_QUANTIZERS:
                module.add_module(attr, new_input_quantizer(cfg))
        else:
            module.__class__ = residual_class_for(module)
            module.add_module("add_residual_input_quantizer", new_input_quantizer(cfg))
            if cfg.residual_inputs == "both":
                module.add_module("add_local_input_quantizer", new_input_quantizer(cfg))
        getattr(report, kind).append(name)

    if any(_is_bert_attention(model.get_submodule(n)) for n in report.attention_matmul):
        register_qdq_attention()
        model.set_attn_implementation(QDQ_ATTENTION)

    # Patterns may also name single quantizers, e.g. "*.matmul_a_input_quantizer".
    for qname, quantizer in iter_quantizers(model):
        if _matches(qname, cfg.skip):
            quantizer.disable()
            report.disabled_quantizers.append(qname)
    return report
