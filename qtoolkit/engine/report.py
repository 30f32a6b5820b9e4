"""The JSON written next to an engine: what was built, how, on what, and in which precisions."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.engine.plan import BuildPlan
from qtoolkit.engine.precision import SUPPORTED_TRT
from qtoolkit.fsutil import write_json
from qtoolkit.version import __version__

__all__ = ["BuildReport", "build_report_path", "trtexec_script_path", "write_build_report"]

REPORT_FORMAT = 2  # 2: tensorrt_major, tensorrt_supported, precision.warnings


@dataclass
class BuildReport:
    plan: BuildPlan
    gpu: str | None
    build_seconds: float
    engine_bytes: int
    timing_cache: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)  # summarize_layers() or {"error": ...}
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "format": REPORT_FORMAT,
            "qtoolkit_version": __version__,
            "created": self.created,
            "onnx": str(plan.onnx_path),
            "engine": str(plan.engine_path),
            "engine_bytes": self.engine_bytes,
            "tensorrt_version": plan.precision.trt_version,
            "tensorrt_major": plan.precision.trt_major,
            "tensorrt_supported": SUPPORTED_TRT,
            "gpu": self.gpu,
            "build_seconds": round(self.build_seconds, 3),
            "precision": {
                "strongly_typed": plan.precision.strongly_typed,
                "network_flags": list(plan.precision.network_flags),
                "builder_flags": list(plan.precision.builder_flags),
                "note": plan.precision.note,
                "warnings": list(plan.precision.warnings),
                "onnx_fp16_tensors": plan.onnx.num_fp16,
                "onnx_quantize_nodes": plan.onnx.num_quantize,
                "onnx_dequantize_nodes": plan.onnx.num_dequantize,
            },
            "profiles": [p.to_dict() for p in plan.profiles],
            "workspace_mib": plan.config.workspace_mib,
            "builder_optimization_level": plan.config.builder_optimization_level,
            "timing_cache": self.timing_cache,
            "layers": self.layers,
            "trtexec": plan.trtexec_command,
        }


def build_report_path(engine_path: str | Path) -> Path:
    """model.engine -> model.build.json"""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.stem + ".build.json")


def trtexec_script_path(engine_path: str | Path) -> Path:
    """model.engine -> model.trtexec.sh"""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.stem + ".trtexec.sh")


def write_build_report(report: BuildReport, path: str | Path | None = None) -> Path:
    """Write the report as JSON (atomically); default path: build_report_path(engine)."""
    path = Path(path) if path is not None else build_report_path(report.plan.engine_path)
    write_json(path, report.to_dict())
    return path
