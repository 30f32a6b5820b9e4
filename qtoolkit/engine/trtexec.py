"""The `trtexec` command line equivalent to a Python-API build (pure; nothing is run).

Flag names follow the trtexec reference: `--onnx`, `--saveEngine`, `--minShapes/--optShapes/
--maxShapes=name:BxS,...`, `--memPoolSize=workspace:<N>M` (base-2 suffix; MiB), `--timingCacheFile`,
`--builderOptimizationLevel`, `--profilingVerbosity=detailed`. Precision flags come from the
`PrecisionPlan`: `--fp16 --int8` (TensorRT 10 weakly typed), `--stronglyTyped` (TensorRT 10
strongly typed) or none (TensorRT 11, where they were removed and strong typing is always on).
`--skipInference` makes it a build only, like the Python build (trtexec otherwise goes on to time
inference for seconds after saving the engine).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from qtoolkit.engine.precision import PrecisionPlan
from qtoolkit.engine.profiles import ShapeProfile, shapes_arg
from qtoolkit.recipe import EngineConfig

__all__ = ["trtexec_argv", "trtexec_command"]


def trtexec_argv(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Sequence[ShapeProfile],
    precision: PrecisionPlan,
    config: EngineConfig,
    timing_cache: str | Path | None,
) -> list[str]:
    """The argument vector, `trtexec` first."""
    argv = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={shapes_arg(profiles, 'min')}",
        f"--optShapes={shapes_arg(profiles, 'opt')}",
        f"--maxShapes={shapes_arg(profiles, 'max')}",
        f"--memPoolSize=workspace:{config.workspace_mib}M",
    ]
    if timing_cache is not None:
        argv.append(f"--timingCacheFile={timing_cache}")
    argv.extend(precision.trtexec_flags)
    if config.builder_optimization_level is not None:
        argv.append(f"--builderOptimizationLevel={config.builder_optimization_level}")
    argv.append("--profilingVerbosity=detailed")
    argv.append("--skipInference")
    return argv


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Sequence[ShapeProfile],
    precision: PrecisionPlan,
    config: EngineConfig,
    timing_cache: str | Path | None,
) -> str:
    """`trtexec_argv` joined into one shell-quoted line."""
    argv = trtexec_argv(onnx_path, engine_path, profiles, precision, config, timing_cache)
    return shlex.join(argv)
