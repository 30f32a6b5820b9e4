"""Quantizer roles: the one place that knows what a quantizer's name says about it.

Names follow QDQBERT's, so its checkpoints and ours share a vocabulary:

* `<gemm>._input_quantizer`, `<gemm>._weight_quantizer`: a Linear / Conv1d input and weight;
* `<attention>.matmul_{q,k,a,v}_input_quantizer`: BERT's Q.K^T and probs.V inputs;
* `<matmul>.lhs_quantizer`, `<matmul>.rhs_quantizer`: SqueezeBERT's MatMulWrapper inputs;
* `<block>.add_residual_input_quantizer`: the skip input of a residual add;
* `<block>.add_local_input_quantizer`: the GEMM output entering it (QDQBERT's placement only).

Insertion, calibration, the ONNX check, sensitivity, the CLI and reports read these names from
here instead of spelling them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADD_LOCAL",
    "ADD_RESIDUAL",
    "ATTENTION_MATMUL",
    "GEMM_INPUT",
    "MATMUL_WRAPPER",
    "QUANTIZER_ATTRS",
    "ROLES",
    "WEIGHT",
    "Role",
    "is_weight_quantizer",
    "role_of",
]

GEMM_INPUT = "_input_quantizer"
WEIGHT = "_weight_quantizer"
# BERT self-attention, in QDQBERT's naming: Q and K^T of the scores, probs and V of the context.
ATTENTION_MATMUL = (
    "matmul_q_input_quantizer",
    "matmul_k_input_quantizer",
    "matmul_a_input_quantizer",
    "matmul_v_input_quantizer",
)
MATMUL_WRAPPER = ("lhs_quantizer", "rhs_quantizer")  # SqueezeBERT's QuantMatMul
ADD_RESIDUAL = "add_residual_input_quantizer"
ADD_LOCAL = "add_local_input_quantizer"
# Every attribute name a quantizer can have under its module.
QUANTIZER_ATTRS = (GEMM_INPUT, WEIGHT, *ATTENTION_MATMUL, *MATMUL_WRAPPER, ADD_LOCAL, ADD_RESIDUAL)


@dataclass(frozen=True)
class Role:
    """A kind of quantizer: its `group` is the QuantConfig switch that inserts it."""

    name: str
    group: str  # linear/conv1d GEMMs share "gemm"; attention_matmul; residual_add
    label: str  # as shown in tables
    attrs: tuple[str, ...]


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("weight", "gemm", "weights (per channel)", (WEIGHT,)),
        Role("gemm_input", "gemm", "GEMM/conv inputs", (GEMM_INPUT,)),
        Role(
            "attention_matmul",
            "attention_matmul",
            "attention matmul inputs",
            ATTENTION_MATMUL + MATMUL_WRAPPER,
        ),
        Role("residual_add", "residual_add", "residual add inputs", (ADD_RESIDUAL, ADD_LOCAL)),
    )
}


def role_of(name: str) -> Role:
    """The role of a quantizer from its (full or leaf) name."""
    leaf = name.rsplit(".", 1)[-1]
    for role in ROLES.values():
        if leaf in role.attrs:
            return role
    raise ValueError(f"'{name}' is not a qtoolkit quantizer name")


def is_weight_quantizer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == WEIGHT
