"""Per-layer precisions of a built engine, from TensorRT's engine inspector JSON.

The engine is built with `ProfilingVerbosity.DETAILED`, so `IEngineInspector.get_engine_information
(LayerInformationFormat.JSON)` lists every layer with its input and output tensors. TensorRT 10
describes a tensor's type inside one "Format/Datatype" string ("Row major linear FP16 format
(kLINEAR)"); TensorRT 11 splits it into "Format" and "DataType" ("Half"). Both are read here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

__all__ = ["layer_precisions", "summarize_layers", "inspect_engine_layers"]

_NAMES = {
    "float": "FP32",
    "fp32": "FP32",
    "half": "FP16",
    "fp16": "FP16",
    "bf16": "BF16",
    "bfloat16": "BF16",
    "int8": "INT8",
    "fp8": "FP8",
    "int4": "INT4",
    "fp4": "FP4",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "bool": "BOOL",
}
_TOKEN = re.compile(r"\b(" + "|".join(sorted(_NAMES, key=len, reverse=True)) + r")\b", re.I)
_QUANTIZED = ("INT8", "FP8", "INT4", "FP4")


def _tensor_type(tensor: Any) -> str | None:
    if not isinstance(tensor, dict):
        return None
    for key in ("DataType", "Format/Datatype", "Format/DataType", "Format"):
        value = tensor.get(key)
        if isinstance(value, str):
            match = _TOKEN.search(value)
            if match:
                return _NAMES[match.group(1).lower()]
    return None


def layer_precisions(engine_info: str | dict[str, Any]) -> list[dict[str, Any]]:
    """One record per layer: name, type, input/output tensor types and a precision.

    A layer's precision is the quantized type among its inputs when there is one (an INT8 GEMM
    may write FP16 or FP32), else the type of its first output.
    """
    info = json.loads(engine_info) if isinstance(engine_info, str) else engine_info
    records = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # LAYER_NAMES_ONLY verbosity: names and nothing else
            records.append(
                {"name": layer, "type": None, "inputs": [], "outputs": [], "precision": None}
            )
            continue
        inputs = [_tensor_type(t) for t in layer.get("Inputs", [])]
        outputs = [_tensor_type(t) for t in layer.get("Outputs", [])]
        quantized = [t for t in inputs if t in _QUANTIZED]
        precision = quantized[0] if quantized else next((t for t in outputs if t), None)
        records.append(
            {
                "name": layer.get("Name"),
                "type": layer.get("LayerType"),
                "inputs": inputs,
                "outputs": outputs,
                "precision": precision,
            }
        )
    return records


def summarize_layers(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Layer count and how many layers run in each precision."""
    counts = Counter(r["precision"] or "unknown" for r in records)
    return {"count": len(records), "by_precision": dict(sorted(counts.items())), "layers": records}


def inspect_engine_layers(trt: Any, logger: Any, serialized: bytes) -> dict[str, Any]:
    """Deserialize the engine and summarize its layers; {'error': ...} when that fails."""
    from qtoolkit.engine.trt_objects import create_runtime

    try:
        runtime = create_runtime(trt, logger)
        engine = runtime.deserialize_cuda_engine(serialized)
        if engine is None:
            return {"error": "the engine could not be deserialized for inspection"}
        inspector = engine.create_engine_inspector()
        info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return summarize_layers(layer_precisions(info))
    except Exception as exc:  # the inspector is a nicety: never fail a finished build over it
        return {"error": f"engine inspector failed: {type(exc).__name__}: {exc}"}
