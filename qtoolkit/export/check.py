"""Static TensorRT-readiness check of a QDQ ONNX model (no TensorRT needed).

Each violation of TensorRT's explicit-quantization rules is reported per node:

| rule | what |
|---|---|
| `opset-below-13` | default-domain opset < 13 (per-channel Q/DQ needs 13) |
| `nonzero-zero-point` | a Q/DQ zero point that is not a constant 0 |
| `not-int8` | a Q/DQ whose quantized type is not int8 (a missing zero point means uint8) |
| `weight-axis-not-0` | a per-channel weight Q/DQ with its scale on an axis other than 0 |
| `integer-operator` | QLinear* / *Integer / ORT quantized contrib ops (TensorRT rejects them) |
| `gemm-input-not-quantized` | a MatMul/Gemm/Conv input the quant config quantizes has no DQ |
| `residual-add-not-quantized` | a residual Add the quant config quantizes has an input w/o Q/DQ |

Like TensorRT, "fed by a DQ" looks through data-movement ops (Transpose, Reshape, ...) and
Casts. The quant config comes from the caller, else from the model's `qtoolkit.quant` metadata
(written by `export_onnx`); without either, only GEMMs with one quantized and one float input
are flagged, and residual Adds are not checked.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from qtoolkit.export.cpu_layout import is_uint8_activation
from qtoolkit.export.graph import QDQ_OPS, SHAPE_OPS, GraphIndex, attr
from qtoolkit.quant.roles import ADD_LOCAL, ADD_RESIDUAL, QUANTIZER_ATTRS

if TYPE_CHECKING:
    from qtoolkit.recipe import QuantConfig

__all__ = [
    "RULES",
    "Violation",
    "check_onnx",
    "check_model_proto",
    "format_violations",
    "has_qdq",
    "load_onnx",
]

RULES = {
    "opset-below-13": "default-domain opset is below 13",
    "nonzero-zero-point": "zero point is not a constant 0",
    "not-int8": "quantized type is not int8",
    "weight-axis-not-0": "per-channel weight scale is not on axis 0",
    "integer-operator": "QLinear*/ *Integer operators are not supported by TensorRT's parser",
    "gemm-input-not-quantized": "a quantized GEMM input is not fed by DequantizeLinear",
    "residual-add-not-quantized": "a quantized residual Add input has no Q/DQ",
}
QUANT_METADATA_KEY = "qtoolkit.quant"
TARGET_METADATA_KEY = "qtoolkit.target"

_GEMM_OPS = ("MatMul", "Gemm", "Conv")
_INTEGER_CONTRIB_OPS = frozenset(
    {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QGemm", "QAttention", "QEmbedLayerNorm"}
)
_LOOK_THROUGH = SHAPE_OPS | {"Cast"}


@dataclass(frozen=True)
class Violation:
    node: str
    op: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.op} '{self.node}'" if self.node else "model"
        return f"[{self.rule}] {where}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def format_violations(violations: list[Violation]) -> str:
    """One line per violation, then a count per rule."""
    if not violations:
        return "TensorRT-ready: no violations"
    lines = [str(v) for v in violations]
    counts: dict[str, int] = {}
    for v in violations:
        counts[v.rule] = counts.get(v.rule, 0) + 1
    lines.append(
        f"{len(violations)} violation(s): " + ", ".join(f"{r} {n}" for r, n in counts.items())
    )
    return "\n".join(lines)


def check_onnx(
    model: str | Path | onnx.ModelProto, quant_cfg: QuantConfig | None = None
) -> list[Violation]:
    """Every TensorRT explicit-quantization rule violation in `model` (a path or a ModelProto).

    `quant_cfg` (a `QuantConfig`) says which GEMM inputs and residual Adds must be quantized.
    """

    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    return check_model_proto(model, quant_cfg if quant_cfg is not None else _metadata_cfg(model))


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """An ONNX model from a file; one line if the file is missing, empty or not ONNX."""
    from qtoolkit.errors import QtoolError

    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"ONNX model not found: {path}")
    if path.stat().st_size == 0:
        raise QtoolError(f"{path} is empty (0 bytes), not an ONNX model; export it again")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QtoolError(f"{path} is not a readable ONNX model: {first}") from None
    if not model.graph.node or not model.ir_version:
        raise QtoolError(f"{path} is not an ONNX model (it has no graph); export it again")
    return model


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether the graph holds any QuantizeLinear/DequantizeLinear node."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _metadata_cfg(model: onnx.ModelProto) -> QuantConfig | None:
    from qtoolkit.recipe import QuantConfig

    for prop in model.metadata_props:
        if prop.key == QUANT_METADATA_KEY:
            return QuantConfig.model_validate(json.loads(prop.value))
    return None


def check_model_proto(
    model: onnx.ModelProto, quant_cfg: QuantConfig | None = None
) -> list[Violation]:
    """`check_onnx` on a loaded model, with the config given (None: structural rules only).

    A model exported with the CPU layout (metadata `qtoolkit.target: onnxruntime`) may carry
    uint8 activations with zero point 128 (see cpu_layout.py); those are not reported, every
    other rule still applies.
    """
    idx = GraphIndex(model.graph)
    cpu_layout = any(
        p.key == TARGET_METADATA_KEY and p.value == "onnxruntime" for p in model.metadata_props
    )
    found: list[Violation] = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 13:
            found.append(
                Violation("", "", "opset-below-13", f"opset {opset.version}; TensorRT needs >= 13")
            )
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            if not (cpu_layout and is_uint8_activation(idx, node)):
                found += _check_qdq(idx, node)
        elif _is_integer_op(node.op_type):
            found.append(
                Violation(
                    node.name,
                    node.op_type,
                    "integer-operator",
                    f"{node.op_type} is not supported by TensorRT; use QuantizeLinear/"
                    "DequantizeLinear around float operators",
                )
            )
        elif node.op_type in _GEMM_OPS:
            found += _check_gemm(idx, node, quant_cfg)
        elif node.op_type == "Add" and quant_cfg is not None and quant_cfg.residual_add:
            found += _check_residual_add(idx, node, quant_cfg)
    return found


def _is_integer_op(op: str) -> bool:
    return op.startswith("QLinear") or "Integer" in op or op in _INTEGER_CONTRIB_OPS


def _check_qdq(idx: GraphIndex, node: onnx.NodeProto) -> list[Violation]:
    out = []

    def add(rule: str, message: str) -> None:
        out.append(Violation(node.name, node.op_type, rule, message))

    zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    zero_point = idx.constant(zp_name) if zp_name else None
    if zp_name is None:
        if node.op_type == "QuantizeLinear":
            add("not-int8", "no zero point, so the output is uint8; pass an int8 zero point 0")
        else:
            data = idx.initializers.get(node.input[0])
            if data is None or data.data_type != onnx.TensorProto.INT8:
                add("not-int8", "no zero point and no int8 constant input; pass an int8 zero 0")
    elif zero_point is None:
        add("nonzero-zero-point", "zero point is not a constant")
    else:
        if zero_point.dtype != np.int8:
            add("not-int8", f"zero point type is {zero_point.dtype}, not int8")
        if np.any(zero_point != 0):
            add("nonzero-zero-point", f"zero point {_short(zero_point)}; TensorRT needs 0")
    weight = _tensor_header(idx, node.input[0])  # (type, rank) of a constant input, no copy
    dq_of_constant = node.op_type == "DequantizeLinear" and weight is not None
    if dq_of_constant and zero_point is not None and weight[0] != onnx.TensorProto.INT8:
        name = onnx.TensorProto.DataType.Name(weight[0]).lower()
        add("not-int8", f"quantized constant is {name}, not int8")
    scale = idx.constant(node.input[1])
    if scale is not None and scale.size > 1 and weight is not None:
        axis = attr(node, "axis", 1)
        if axis % max(weight[1], 1) != 0:
            add(
                "weight-axis-not-0",
                f"per-channel weight scale on axis {axis}; TensorRT wants the output channel, "
                "axis 0",
            )
    return out


def _tensor_header(idx: GraphIndex, name: str) -> tuple[int, int] | None:
    """(element type, rank) of an initializer or Constant output, without reading its data."""
    tensor = idx.initializers.get(name)
    if tensor is None:
        node = idx.producer.get(name)
        value = attr(node, "value") if node is not None and node.op_type == "Constant" else None
        tensor = value if isinstance(value, onnx.TensorProto) else None
    return None if tensor is None else (tensor.data_type, len(tensor.dims))


def _short(values: np.ndarray) -> str:
    flat = values.reshape(-1)
    return str(flat[0]) if flat.size == 1 else f"{flat[flat != 0][0]} (of {flat.size} values)"


def _fed_by_dq(idx: GraphIndex, name: str) -> bool:
    producer = idx.producer_through(name, _LOOK_THROUGH)
    return producer is not None and producer.op_type == "DequantizeLinear"


def _is_weight(idx: GraphIndex, name: str) -> bool:
    """True when `name` comes from a constant, through shape ops, Casts and Q/DQ."""
    for _ in range(64):
        if idx.is_constant(name):
            return True
        node = idx.producer.get(name)
        if node is None or node.op_type not in _LOOK_THROUGH | set(QDQ_OPS) or not node.input:
            return False
        name = node.input[0]
    return False


def module_path(node_name: str) -> str:
    """`/model/bert/encoder/layer.0/attention/self/query/MatMul` -> `bert.encoder....query`."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return ""
    parts = parts[:-1]
    if parts and parts[0] == "model":  # the export wrapper's attribute
        parts = parts[1:]
    return ".".join(parts)


def _skipped(module: str, skip: list[str]) -> bool:
    if not module or not skip:
        return False
    parts = module.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    if any(fnmatchcase(p, pat) for pat in skip for p in prefixes):
        return True
    candidates = [f"{module}.{suffix}" for suffix in QUANTIZER_ATTRS]
    return any(fnmatchcase(c, pat) for pat in skip for c in candidates)


def _check_gemm(idx: GraphIndex, node: onnx.NodeProto, quant_cfg) -> list[Violation]:
    data_inputs = [n for n in node.input[:2] if n]
    if len(data_inputs) < 2:
        return []
    fed = [_fed_by_dq(idx, n) for n in data_inputs]
    if all(fed):
        return []
    if quant_cfg is None:
        if not any(fed):
            return []  # a float GEMM: fine unless a config says otherwise
        required = [True, True]
        why = "one input is quantized and the other is not"
    else:
        if node.op_type == "Conv":
            group_on = quant_cfg.conv1d
        elif any(_is_weight(idx, n) for n in data_inputs):
            group_on = quant_cfg.linear
        else:
            group_on = quant_cfg.attention_matmul
        if not group_on or _skipped(module_path(node.name), quant_cfg.skip):
            return []
        required = [True, True]
        why = "the quant config quantizes both inputs"
    return [
        Violation(
            node.name,
            node.op_type,
            "gemm-input-not-quantized",
            f"input {i} ('{name}') is not fed by DequantizeLinear ({why})",
        )
        for i, (name, ok, need) in enumerate(zip(data_inputs, fed, required, strict=True))
        if need and not ok
    ]


def _is_residual_add(idx: GraphIndex, node: onnx.NodeProto) -> bool:
    """An Add of two activations whose sum goes (through shape ops) into a LayerNormalization.

    Embedding sums (inputs straight from Gather) are not residual adds.
    """
    if len(node.input) != 2 or any(idx.is_constant(n) for n in node.input):
        return False
    for name in node.input:
        producer = idx.producer_through(name, _LOOK_THROUGH | set(QDQ_OPS))
        if producer is not None and producer.op_type == "Gather":
            return False
    frontier = [node.output[0]]
    for _ in range(8):
        nxt = []
        for name in frontier:
            for consumer in idx.consumers.get(name, []):
                if consumer.op_type == "LayerNormalization":
                    return True
                if consumer.op_type in _LOOK_THROUGH:
                    nxt.extend(consumer.output)
        frontier = nxt
    return False


def _gemm_output_input(idx: GraphIndex, node: onnx.NodeProto) -> int | None:
    """Index of the Add input that is a GEMM output (through its bias Add), or None."""
    found = []
    for i, name in enumerate(node.input):
        producer = idx.producer.get(name)
        for _ in range(8):
            if producer is None:
                break
            if producer.op_type in _GEMM_OPS:
                found.append(i)
                break
            bias_add = producer.op_type == "Add" and any(idx.is_constant(n) for n in producer.input)
            if producer.op_type not in _LOOK_THROUGH | set(QDQ_OPS) and not bias_add:
                break
            data = next((n for n in producer.input if not idx.is_constant(n)), None)
            producer = idx.producer.get(data) if data else None
    return found[0] if len(found) == 1 else None


def _quantizer_skipped(module: str, quantizer: str, skip: list[str]) -> bool:
    name = f"{module}.{quantizer}"
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(p, pat) for pat in skip for p in prefixes)


def _check_residual_add(idx: GraphIndex, node: onnx.NodeProto, quant_cfg) -> list[Violation]:
    """The skip input must be quantized; with `residual_inputs: both`, the GEMM output too."""
    if not _is_residual_add(idx, node):
        return []
    module = module_path(node.name)
    both = getattr(quant_cfg, "residual_inputs", "both") == "both"
    local = _gemm_output_input(idx, node)
    fed = [_fed_by_dq(idx, name) for name in node.input]
    required = []
    for i in range(len(node.input)):
        if i == local:
            need = both and not _quantizer_skipped(module, ADD_LOCAL, quant_cfg.skip)
        elif local is None and not both:
            need = False  # cannot tell the skip input apart: at least one must be quantized
        else:
            need = not _quantizer_skipped(module, ADD_RESIDUAL, quant_cfg.skip)
        required.append(need)
    if local is None and not both and not any(fed):
        required = [True] * len(node.input)
    return [
        Violation(
            node.name,
            "Add",
            "residual-add-not-quantized",
            f"{'GEMM-output' if i == local else 'skip'} input {i} ('{name}') has no Q/DQ, but "
            f"quant.residual_add is on (residual_inputs: {'both' if both else 'residual'})",
        )
        for i, name in enumerate(node.input)
        if required[i] and not fed[i]
    ]
