"""Everything about a build that can be decided without TensorRT: profiles, precision, trtexec.

`plan_build` is what a dry run returns; `build_engine` executes the same plan with the Python API,
so the printed trtexec command and the Python build cannot drift apart. The TensorRT version is
part of the plan (10 and 11 need different flags): the installed one, or the one asked for.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from qtoolkit.engine.environment import installed_tensorrt_version
from qtoolkit.engine.precision import PrecisionPlan, plan_precision
from qtoolkit.engine.profiles import (
    OnnxSummary,
    ShapeProfile,
    check_positions,
    make_profiles,
    read_onnx,
)
from qtoolkit.engine.trtexec import trtexec_argv
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

__all__ = ["BuildPlan", "DRY_RUN_VERSIONS", "default_timing_cache", "plan_build"]

# Without TensorRT here and no version asked for, a dry run prints one command for each.
DRY_RUN_VERSIONS = ("10", "11")


@dataclass(frozen=True)
class BuildPlan:
    onnx_path: Path
    engine_path: Path
    onnx: OnnxSummary
    profiles: tuple[ShapeProfile, ...]
    precision: PrecisionPlan
    timing_cache: Path
    config: EngineConfig

    @property
    def trtexec_argv(self) -> list[str]:
        return trtexec_argv(
            self.onnx_path,
            self.engine_path,
            self.profiles,
            self.precision,
            self.config,
            self.timing_cache,
        )

    @property
    def trtexec_command(self) -> str:
        return shlex.join(self.trtexec_argv)


def default_timing_cache(engine_path: str | Path) -> Path:
    """Builds writing into the same folder share one cache."""
    return Path(engine_path).parent / "timing.cache"


def plan_build(
    onnx_path: str | Path,
    engine_path: str | Path,
    config: EngineConfig,
    trt_version: str | None = None,
    onnx: OnnxSummary | None = None,
) -> BuildPlan:
    """Read the ONNX (unless `onnx` is its summary already) and decide the build for
    `trt_version` (default: the installed TensorRT; QtoolError when there is none).
    Nothing is written and TensorRT is not imported."""
    onnx = onnx if onnx is not None else read_onnx(onnx_path)
    check_positions(onnx, config, onnx_path)
    if trt_version is None:
        trt_version = installed_tensorrt_version()
        if trt_version is None:
            raise QtoolError(
                "TensorRT is not installed here, and the build differs between TensorRT 10 and "
                "11: pass --trt-version 10 or --trt-version 11"
            )
    cache = Path(config.timing_cache) if config.timing_cache else default_timing_cache(engine_path)
    return BuildPlan(
        onnx_path=Path(onnx_path),
        engine_path=Path(engine_path),
        onnx=onnx,
        profiles=tuple(make_profiles(onnx.inputs, config)),
        precision=plan_precision(trt_version, config, onnx.has_qdq, onnx.has_fp16),
        timing_cache=cache,
        config=config,
    )
