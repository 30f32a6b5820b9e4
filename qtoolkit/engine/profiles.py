"""The ONNX inputs an engine is built for, and one optimisation profile shape per input.

BERT-family encoders take `[batch, seq]` integer inputs (`input_ids`, `attention_mask`,
`token_type_ids`, whichever the export kept); every one gets the same min/opt/max (batch, seq)
from `EngineConfig`. Multiple-choice exports take `[batch, choices, seq]`: the middle axis gets
`EngineConfig.num_choices`. A dimension the ONNX fixes must match the profile, which is checked
here so the user gets one line instead of a TensorRT build failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

__all__ = [
    "OnnxInput",
    "OnnxSummary",
    "ShapeProfile",
    "check_positions",
    "make_profiles",
    "read_onnx",
    "shapes_arg",
]

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class OnnxInput:
    name: str
    dims: tuple[int | str | None, ...]  # int: fixed; str: named dynamic axis; None: unknown


@dataclass(frozen=True)
class OnnxSummary:
    inputs: tuple[OnnxInput, ...]
    num_quantize: int
    num_dequantize: int
    # fp16 initializers plus Casts to fp16: > 0 for an `export.fp16` model. TensorRT 11 takes
    # float precision only from the ONNX, so an fp32 model builds fp32 layers there.
    num_fp16: int = 0
    # The longest sequence the model takes (max_position_embeddings), when it can be told.
    max_positions: int | None = None

    @property
    def has_fp16(self) -> bool:
        return self.num_fp16 > 0

    @property
    def has_qdq(self) -> bool:
        return self.num_quantize + self.num_dequantize > 0


@dataclass(frozen=True)
class ShapeProfile:
    name: str
    min: tuple[int, ...]  # (batch, seq), or (batch, choices, seq)
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "input": self.name,
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
        }


def read_onnx(path: str | Path) -> OnnxSummary:
    """Graph inputs (initializers excluded) and Q/DQ counts; external weights are not loaded."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise QtoolError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = []
    for value in graph.input:
        if value.name in initializers:
            continue
        dims: list[int | str | None] = []
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        inputs.append(OnnxInput(value.name, tuple(dims)))
    ops = [node.op_type for node in graph.node]
    fp16 = onnx.TensorProto.FLOAT16
    casts = sum(
        1
        for node in graph.node
        if node.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in node.attribute)
    )
    return OnnxSummary(
        inputs=tuple(inputs),
        num_quantize=ops.count(QDQ_OPS[0]),
        num_dequantize=ops.count(QDQ_OPS[1]),
        num_fp16=casts + sum(1 for init in graph.initializer if init.data_type == fp16),
        max_positions=_max_positions(path, graph),
    )


def _max_positions(path: Path, graph) -> int | None:
    """max_position_embeddings from the config.json qtool's export writes beside the file,
    else the row count of the graph's position-embedding table."""
    import json

    try:
        config = json.loads((path.parent / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict) and isinstance(config.get("max_position_embeddings"), int):
        return config["max_position_embeddings"]
    for init in graph.initializer:
        if init.name.endswith("position_embeddings.weight") and len(init.dims) == 2:
            return int(init.dims[0])
    return None


def check_positions(summary: OnnxSummary, config: EngineConfig, path: str | Path) -> None:
    """The profile's longest sequence must be one the model takes: a longer one would build an
    engine that fails (or reads past its position table) at run time."""
    longest = config.max_shape[1]
    if summary.max_positions is not None and longest > summary.max_positions:
        raise QtoolError(
            f"engine.max_shape asks for sequences of {longest} tokens, but {path} takes at most "
            f"{summary.max_positions} (max_position_embeddings); use e.g. --max-shape "
            f"{config.max_shape[0]}x{summary.max_positions}"
        )


def _shapes_for(inp: OnnxInput, config: EngineConfig) -> tuple[tuple[str, ...], dict]:
    """The axis names and the min/opt/max shape of one input, from its rank."""
    (b0, s0), (b1, s1), (b2, s2) = config.min_shape, config.opt_shape, config.max_shape
    if len(inp.dims) == 2:
        return ("batch", "seq"), {"min": (b0, s0), "opt": (b1, s1), "max": (b2, s2)}
    if len(inp.dims) == 3:
        c0, c1, c2 = config.num_choices
        return ("batch", "choices", "seq"), {
            "min": (b0, c0, s0),
            "opt": (b1, c1, s1),
            "max": (b2, c2, s2),
        }
    raise QtoolError(
        f"input '{inp.name}' has shape {list(inp.dims)}; the engine builder expects "
        "[batch, seq] inputs (input_ids, attention_mask, token_type_ids), or "
        "[batch, choices, seq] for multiple choice"
    )


def make_profiles(inputs: Sequence[OnnxInput], config: EngineConfig) -> list[ShapeProfile]:
    """One min/opt/max profile per `[batch, seq]` or `[batch, choices, seq]` input (pure)."""
    if not inputs:
        raise QtoolError("the ONNX model has no inputs to build a profile for")
    profiles = []
    for inp in inputs:
        axes, shapes = _shapes_for(inp, config)
        for axis, what in enumerate(axes):
            fixed = inp.dims[axis]
            if not isinstance(fixed, int) or fixed <= 0:
                continue
            wanted = {key: shape[axis] for key, shape in shapes.items()}
            if set(wanted.values()) != {fixed}:
                raise QtoolError(
                    f"input '{inp.name}' has a fixed {what} of {fixed} but the engine profile "
                    f"asks for min/opt/max {wanted['min']}/{wanted['opt']}/{wanted['max']}: "
                    f"export with a dynamic {what} axis or set all three to {fixed}"
                )
        profiles.append(ShapeProfile(inp.name, shapes["min"], shapes["opt"], shapes["max"]))
    return profiles


def shapes_arg(profiles: Sequence[ShapeProfile], which: str) -> str:
    """trtexec's shape list: 'input_ids:1x16,attention_mask:1x16' for which='min'."""
    return ",".join(f"{p.name}:{'x'.join(str(d) for d in getattr(p, which))}" for p in profiles)
