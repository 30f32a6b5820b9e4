"""Build a serialized TensorRT engine from a QDQ ONNX file with the TensorRT Python API.

Outputs, each written atomically (a temporary sibling renamed into place):
    <name>.engine       the serialized engine
    <name>.build.json   TensorRT version, GPU, profiles, precision, warnings, layer precisions
    <name>.trtexec.sh   the equivalent trtexec command (build only: --skipInference)
    timing.cache        (or engine.timing_cache) loaded before the build if present, merged
                        with what is on disk and saved after, under a lock
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.engine import environment
from qtoolkit.engine.layers import inspect_engine_layers
from qtoolkit.engine.logger import make_logger, quote_errors
from qtoolkit.engine.plan import DRY_RUN_VERSIONS, BuildPlan, plan_build
from qtoolkit.engine.profiles import make_profiles, read_onnx
from qtoolkit.engine.report import (
    BuildReport,
    build_report_path,
    trtexec_script_path,
    write_build_report,
)
from qtoolkit.engine.timing_cache import attach_timing_cache, save_timing_cache
from qtoolkit.engine.trt_objects import create_builder
from qtoolkit.errors import QtoolError
from qtoolkit.fsutil import atomic_file
from qtoolkit.recipe import EngineConfig

__all__ = ["EngineBuild", "build_engine", "dry_run"]


@dataclass
class EngineBuild:
    engine_path: Path
    report_path: Path
    trtexec_script: Path
    report: BuildReport

    def summary(self) -> str:
        """What `qtool build-engine` prints: the engine, its size, TensorRT, GPU, build time."""
        report = self.report.to_dict()
        size_mib = self.engine_path.stat().st_size / 2**20
        return (
            f"built {self.engine_path} ({size_mib:.1f} MiB) with TensorRT "
            f"{report.get('tensorrt_version')} on {report.get('gpu')} in "
            f"{report.get('build_seconds', 0):.1f}s\n"
            f"report {self.report_path}; trtexec equivalent {self.trtexec_script}"
        )


def dry_run(
    onnx_path: str | Path,
    engine_path: str | Path,
    config: EngineConfig,
    trt_version: str | None = None,
) -> str:
    """The trtexec command for this build; nothing is built or written.

    Without `trt_version` and without TensorRT here, one commented command per major version
    (their flags differ), so the output never silently assumes one."""
    if trt_version is None and environment.installed_tensorrt_version() is None:
        onnx = read_onnx(onnx_path)
        blocks = []
        for version in DRY_RUN_VERSIONS:
            plan = plan_build(onnx_path, engine_path, config, version, onnx=onnx)
            blocks.append(_commented(plan, plan.precision.note))
        return "\n".join(blocks)
    plan = plan_build(onnx_path, engine_path, config, trt_version)
    return _commented(plan) if plan.precision.warnings else plan.trtexec_command


def _commented(plan: BuildPlan, title: str | None = None) -> str:
    lines = [f"# {title}"] if title else []
    lines += [f"# warning: {w}" for w in plan.precision.warnings]
    return "\n".join([*lines, plan.trtexec_command])


def build_engine(
    onnx_path: str | Path, engine_path: str | Path, config: EngineConfig
) -> EngineBuild:
    """Build `engine_path` from `onnx_path`. Needs TensorRT >= 10 and an NVIDIA GPU."""
    from qtoolkit.ui import notice

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if engine_path.resolve() == onnx_path.resolve():
        raise QtoolError(f"the engine would overwrite its ONNX model: {engine_path}")
    # The model and the profiles are checked first, so their errors show on any machine.
    onnx = read_onnx(onnx_path)
    make_profiles(onnx.inputs, config)
    trt = environment.require_tensorrt_and_gpu()
    plan = plan_build(onnx_path, engine_path, config, trt_version=trt.__version__, onnx=onnx)
    for warning in plan.precision.warnings:
        notice(warning)
    logger = make_logger(trt)
    # The parser owns the network's weights: keep it alive until the build is done.
    builder, network, parser = _parse(trt, logger, plan)
    builder_config = _configure(trt, logger, builder, plan)
    cache_state = attach_timing_cache(builder_config, plan.timing_cache)

    mark = logger.mark()
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, builder_config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise QtoolError(
            f"TensorRT {trt.__version__} failed to build {engine_path.name} from {onnx_path}: "
            f"{quote_errors(logger.errors_since(mark), 'see TensorRT messages above')}"
        )
    data = memoryview(serialized).tobytes()
    del parser, network  # the serialized engine holds its own copy of the weights

    save_timing_cache(builder_config, cache_state)
    with atomic_file(engine_path) as tmp:
        tmp.write_bytes(data)
    gpus = environment.cuda_device_names()
    report = BuildReport(
        plan=plan,
        gpu=gpus[0] if gpus else None,
        build_seconds=seconds,
        engine_bytes=len(data),
        timing_cache=cache_state.to_dict(),
        layers=inspect_engine_layers(trt, logger, data),
    )
    report_path = write_build_report(report, build_report_path(engine_path))
    script = _write_trtexec_script(plan)
    return EngineBuild(engine_path, report_path, script, report)


def _parse(trt: Any, logger: Any, plan: BuildPlan) -> tuple[Any, Any, Any]:
    builder = create_builder(trt, logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    mark = logger.mark()
    # parse_from_file (not parse(bytes)) lets the parser find external weight files.
    if not parser.parse_from_file(str(plan.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        reason = quote_errors(errors or logger.errors_since(mark), "see TensorRT messages above")
        raise QtoolError(f"TensorRT could not parse {plan.onnx_path}: {reason}")
    return builder, network, parser


def _configure(trt: Any, logger: Any, builder: Any, plan: BuildPlan) -> Any:
    config = plan.config
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    for flag in plan.precision.builder_flags:
        builder_config.set_flag(getattr(trt.BuilderFlag, flag))
    # DETAILED keeps per-layer types in the engine for the inspector (layers in the report).
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if config.builder_optimization_level is not None:
        builder_config.builder_optimization_level = config.builder_optimization_level
    profile = builder.create_optimization_profile()
    for shapes in plan.profiles:
        profile.set_shape(shapes.name, shapes.min, shapes.opt, shapes.max)
    mark = logger.mark()
    if builder_config.add_optimization_profile(profile) < 0:
        reason = quote_errors(logger.errors_since(mark), "see TensorRT messages above")
        raise QtoolError(f"TensorRT refused the optimisation profile: {reason}")
    return builder_config


def _network_flags(trt: Any, plan: BuildPlan) -> int:
    flags = 0
    for name in plan.precision.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return flags


def _write_trtexec_script(plan: BuildPlan) -> Path:
    path = trtexec_script_path(plan.engine_path)
    lines = [
        "#!/bin/sh",
        f"# Equivalent of qtoolkit's Python-API build ({plan.precision.note}).",
        *(f"# warning: {w}" for w in plan.precision.warnings),
        " \\\n    ".join(shlex.quote(arg) for arg in plan.trtexec_argv),
    ]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path
