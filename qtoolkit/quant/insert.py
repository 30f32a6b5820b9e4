"""Explicit quantizer insertion on a model instance (no global monkeypatching of torch.nn).

Four groups, each switchable in the recipe's `quant` section:

* `linear`: every `nn.Linear` becomes a `QuantLinear` (input per tensor, weight per row);
* `conv1d`: every `nn.Conv1d` (SqueezeBERT's grouped 1x1 convolutions) becomes a `QuantConv1d`;
* `attention_matmul`: both inputs of Q.K^T and probs.V (BERT through transformers' attention
  registry, SqueezeBERT by replacing its `MatMulWrapper`s);
* `residual_add`: the skip input of each residual add (with `residual_inputs: both`, also the
  GEMM output added to it).

Which class gets which treatment is one table, `swap_table()`, keyed by the exact class.

The swapped modules hold the *same* Parameter objects as the originals, so weights are copied
exactly and tied weights stay tied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn

from qtoolkit.errors import QtoolError
from qtoolkit.quant.descriptors import input_descriptor, new_input_quantizer, weight_descriptor
from qtoolkit.quant.modules import (
    QDQ_ATTENTION,
    QuantMatMul,
    register_qdq_attention,
    residual_classes,
)
from qtoolkit.quant.roles import ADD_LOCAL, ADD_RESIDUAL, ATTENTION_MATMUL
from qtoolkit.recipe import QuantConfig

__all__ = [
    "InsertReport",
    "Swap",
    "insert_quantizers",
    "iter_quantizers",
    "is_quantized",
    "swap_table",
]


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


def _build_quant_module(cls: type, float_init: Callable, cfg: QuantConfig, **kwargs) -> nn.Module:
    """A pytorch-quantization module `cls`, built on the meta device as its `__init__` builds it:
    the float layer's `__init__` (`float_init`), then what `QuantMixin.init_quantizer` sets up
    (`_fake_quant` and one TensorQuantizer per descriptor). `init_quantizer` itself is not called:
    it checks its caller with `inspect.stack()`, which reads the source of every frame on the
    stack, ~0.1 s per module under a CLI or test stack (48 of 260 s of the integration tests went
    there). tests/unit/test_insert.py checks the result against the real constructor."""
    from pytorch_quantization.nn import TensorQuantizer

    new = cls.__new__(cls)
    with torch.device("meta"):
        float_init(new, **kwargs)
        new._fake_quant = True
        new._input_quantizer = TensorQuantizer(input_descriptor(cfg))
        new._weight_quantizer = TensorQuantizer(weight_descriptor(cfg))
    return new


def _quant_linear(module: nn.Linear, cfg: QuantConfig) -> nn.Module:
    from pytorch_quantization.nn import QuantLinear

    new = _build_quant_module(
        QuantLinear,
        nn.Linear.__init__,
        cfg,
        in_features=module.in_features,
        out_features=module.out_features,
        bias=module.bias is not None,
    )
    new.weight = module.weight
    new.bias = module.bias
    return new.train(module.training)


def _quant_conv1d(module: nn.Conv1d, cfg: QuantConfig) -> nn.Module:
    from pytorch_quantization.nn import QuantConv1d
    from torch.nn.modules.conv import _ConvNd

    new = _build_quant_module(
        QuantConv1d,
        _ConvNd.__init__,
        cfg,
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel_size=module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        transposed=False,
        output_padding=(0,),
        groups=module.groups,
        bias=module.bias is not None,
        padding_mode=module.padding_mode,
    )
    new.weight = module.weight
    new.bias = module.bias
    return new.train(module.training)


def _attach_attention_quantizers(model, name, module, cfg) -> None:
    """BERT attention keeps its class: transformers' attention registry calls our function,
    which finds the quantizers on the module."""
    for attr in ATTENTION_MATMUL:
        module.add_module(attr, new_input_quantizer(cfg))


def _wrap_matmul(model, name, module, cfg) -> None:
    _replace(model, name, QuantMatMul(new_input_quantizer(cfg), new_input_quantizer(cfg)))


def _residual_swap(quant_class: type) -> SwapFn:
    def swap(model, name, module, cfg) -> None:
        module.__class__ = quant_class
        module.add_module(ADD_RESIDUAL, new_input_quantizer(cfg))
        if cfg.residual_inputs == "both":
            module.add_module(ADD_LOCAL, new_input_quantizer(cfg))

    return swap


SwapFn = Callable[[nn.Module, str, nn.Module, QuantConfig], None]


@dataclass(frozen=True)
class Swap:
    """How one module class is quantized: `group` is the QuantConfig switch (and InsertReport
    field) that turns it on; `apply(model, name, module, cfg)` does it in place."""

    group: str
    apply: SwapFn


def _linear(model, name, module, cfg) -> None:
    _replace(model, name, _quant_linear(module, cfg))


def _conv1d(model, name, module, cfg) -> None:
    _replace(model, name, _quant_conv1d(module, cfg))


@functools.cache
def swap_table() -> dict[type, Swap]:
    """Exact module class -> its swap (a subclass is not matched: its forward may differ).

    Adding an architecture means adding its classes here (and a placement test)."""
    from transformers.models.bert.modeling_bert import BertCrossAttention, BertSelfAttention
    from transformers.models.squeezebert.modeling_squeezebert import MatMulWrapper

    table = {
        nn.Linear: Swap("linear", _linear),
        nn.Conv1d: Swap("conv1d", _conv1d),
        BertSelfAttention: Swap("attention_matmul", _attach_attention_quantizers),
        BertCrossAttention: Swap("attention_matmul", _attach_attention_quantizers),
        MatMulWrapper: Swap("attention_matmul", _wrap_matmul),
    }
    for float_class, quant_class in residual_classes().items():
        table[float_class] = Swap("residual_add", _residual_swap(quant_class))
    return table


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
    table = swap_table()
    report = InsertReport()
    attention_swapped = False
    for name, module in list(model.named_modules()):
        swap = table.get(type(module)) if name else None
        if swap is None or not getattr(cfg, swap.group):
            continue
        if _matches(name, cfg.skip):
            report.skipped_modules.append(name)
            continue
        swap.apply(model, name, module, cfg)
        attention_swapped |= swap.apply is _attach_attention_quantizers
        getattr(report, swap.group).append(name)

    if attention_swapped:
        register_qdq_attention()
        model.set_attn_implementation(QDQ_ATTENTION)

    # Patterns may also name single quantizers, e.g. "*.matmul_a_input_quantizer".
    for qname, quantizer in iter_quantizers(model):
        if _matches(qname, cfg.skip):
            quantizer.disable()
            report.disabled_quantizers.append(qname)
    _check_skip_patterns(model, cfg.skip)
    return report


def _check_skip_patterns(model: nn.Module, patterns: list[str]) -> None:
    """A pattern that matches no module and no quantizer is a typo: refuse it, naming it."""
    names = [name for name, _ in model.named_modules() if name]
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            example = next((n for n, _ in iter_quantizers(model)), names[0] if names else "")
            raise QtoolError(
                f"quant.skip pattern '{pattern}' matches no module or quantizer (names look "
                f"like '{example}'; qtool inspect lists a checkpoint's quantizers)"
            )
