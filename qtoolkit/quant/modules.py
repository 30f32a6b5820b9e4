"""Quantized replacements for the BERT-family modules pytorch-quantization has no class for.

* `QuantMatMul` replaces SqueezeBERT's `MatMulWrapper` (both matmul inputs quantized).
* Residual classes quantize both inputs of the skip-connection add, as QDQBERT did, so TensorRT
  can fuse the add into the preceding INT8 GEMM.
* `qdq_attention_forward` is registered in transformers' attention-function registry; BERT's
  self-attention calls it with itself as `module`, and it quantizes both inputs of Q.K^T and
  probs.V with quantizers attached to that module.

With every quantizer disabled each of these computes exactly what the original computes.
"""

from __future__ import annotations

import torch
from torch import nn

from qtoolkit.quant.roles import ADD_LOCAL, ADD_RESIDUAL, ATTENTION_MATMUL

__all__ = [
    "QDQ_ATTENTION",
    "QuantMatMul",
    "residual_classes",
    "register_qdq_attention",
]

QDQ_ATTENTION = "qtoolkit_qdq"


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class QuantMatMul(nn.Module):
    """`torch.matmul(a, b)` with both inputs fake-quantized."""

    def __init__(self, lhs_quantizer: nn.Module, rhs_quantizer: nn.Module):
        super().__init__()
        self.lhs_quantizer = lhs_quantizer
        self.rhs_quantizer = rhs_quantizer

    def forward(self, mat1: torch.Tensor, mat2: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.lhs_quantizer(mat1), self.rhs_quantizer(mat2))


def qdq_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """transformers' eager attention, with the four matmul inputs passed through quantizers.

    The arithmetic is kept operation for operation identical to `eager_attention_forward` so
    that a model with disabled quantizers reproduces the float model bit for bit.
    """
    q_quant, k_quant, a_quant, v_quant = (
        getattr(module, attr, _identity) for attr in ATTENTION_MATMUL
    )
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    attn_weights = torch.matmul(q_quant(query), k_quant(key).transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(a_quant(attn_weights), v_quant(value))
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


def register_qdq_attention() -> None:
    """Add our attention function (and eager's mask format) to transformers' registries.

    Registration adds a new key; it replaces nothing, so models not using it are unaffected.
    """
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if QDQ_ATTENTION not in ALL_ATTENTION_FUNCTIONS.valid_keys():
        ALL_ATTENTION_FUNCTIONS.register(QDQ_ATTENTION, qdq_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(QDQ_ATTENTION, eager_mask)


class _ResidualQuantMixin:
    """Quantizes the skip input of a residual add (`add_residual_input_quantizer`) and, when
    present, the GEMM output it is added to (`add_local_input_quantizer`)."""

    def _quantized_add(self, local: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        local_quantizer = getattr(self, ADD_LOCAL, _identity)
        return local_quantizer(local) + getattr(self, ADD_RESIDUAL)(residual)


def _bert_residual_classes() -> dict[type, type]:
    from transformers.models.bert.modeling_bert import BertOutput, BertSelfOutput

    class QuantBertSelfOutput(_ResidualQuantMixin, BertSelfOutput):
        def forward(self, hidden_states, input_tensor):
            hidden_states = self.dropout(self.dense(hidden_states))
            return self.LayerNorm(self._quantized_add(hidden_states, input_tensor))

    class QuantBertOutput(_ResidualQuantMixin, BertOutput):
        def forward(self, hidden_states, input_tensor):
            hidden_states = self.dropout(self.dense(hidden_states))
            return self.LayerNorm(self._quantized_add(hidden_states, input_tensor))

    return {BertSelfOutput: QuantBertSelfOutput, BertOutput: QuantBertOutput}


def _squeezebert_residual_classes() -> dict[type, type]:
    from transformers.models.squeezebert.modeling_squeezebert import ConvDropoutLayerNorm

    class QuantConvDropoutLayerNorm(_ResidualQuantMixin, ConvDropoutLayerNorm):
        def forward(self, hidden_states, input_tensor):
            x = self.dropout(self.conv1d(hidden_states))
            return self.layernorm(self._quantized_add(x, input_tensor))

    return {ConvDropoutLayerNorm: QuantConvDropoutLayerNorm}


def residual_classes() -> dict[type, type]:
    """Each residual block's float class -> its quantized class."""
    return {**_bert_residual_classes(), **_squeezebert_residual_classes()}
