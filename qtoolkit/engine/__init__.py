"""TensorRT engines: build from QDQ ONNX (TensorRT 10 and 11), dry run, runtime for benchmarks.

`tensorrt` (and torch.cuda, for the runtime) are imported only inside the functions that use them,
so this package imports on any machine; building or running says in one line what is missing.
"""

from qtoolkit.engine.build import EngineBuild, build_engine, dry_run
from qtoolkit.engine.environment import (
    cuda_device_names,
    installed_tensorrt_version,
    require_tensorrt_and_gpu,
)
from qtoolkit.engine.layers import layer_precisions, summarize_layers
from qtoolkit.engine.plan import BuildPlan, plan_build
from qtoolkit.engine.precision import PrecisionPlan, parse_trt_version, plan_precision
from qtoolkit.engine.profiles import OnnxSummary, ShapeProfile, make_profiles, read_onnx
from qtoolkit.engine.report import BuildReport, write_build_report
from qtoolkit.engine.runtime import EngineRunner, TimedRun
from qtoolkit.engine.trtexec import trtexec_argv, trtexec_command

__all__ = [
    "BuildPlan",
    "BuildReport",
    "EngineBuild",
    "EngineRunner",
    "OnnxSummary",
    "PrecisionPlan",
    "ShapeProfile",
    "TimedRun",
    "build_engine",
    "cuda_device_names",
    "dry_run",
    "installed_tensorrt_version",
    "layer_precisions",
    "make_profiles",
    "parse_trt_version",
    "plan_build",
    "plan_precision",
    "read_onnx",
    "require_tensorrt_and_gpu",
    "summarize_layers",
    "trtexec_argv",
    "trtexec_command",
    "write_build_report",
]
