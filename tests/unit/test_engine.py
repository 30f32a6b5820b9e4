"""qtoolkit.engine on CPU: pure decisions, error lines, and a build against a fake `tensorrt`.

The fake records every call the builder makes, so the test checks what would be asked of real
TensorRT: profile shapes, flags per version, workspace, timing cache load/save, outputs written.
"""

from __future__ import annotations

import ctypes
import enum
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from qtoolkit.engine import (
    build_engine,
    dry_run,
    environment,
    layer_precisions,
    make_profiles,
    parse_trt_version,
    plan_build,
    plan_precision,
    read_onnx,
    summarize_layers,
    trtexec_command,
)
from qtoolkit.engine.plan import ASSUMED_TRT_VERSION
from qtoolkit.engine.profiles import OnnxInput
from qtoolkit.engine.report import BuildReport, build_report_path, write_build_report
from qtoolkit.engine.runtime import EngineRunner, torch_dtype_for
from qtoolkit.engine.timing_cache import attach_timing_cache, save_timing_cache
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# --- a tiny ONNX file --------------------------------------------------------------------------


def write_onnx(path: Path, inputs=BERT_INPUTS, qdq: bool = True, seq="seq") -> Path:
    """[batch, seq] int64 inputs summed into one output, with a Q/DQ pair if `qdq`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, last = [], inputs[0]
    for i, name in enumerate(inputs[1:]):
        nodes.append(helper.make_node("Add", [last, name], [f"sum{i}"]))
        last = f"sum{i}"
    nodes.append(helper.make_node("Cast", [last], ["f"], to=TensorProto.FLOAT))
    inits = []
    if qdq:
        inits = [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["out"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["f"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", seq]) for n in inputs],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", seq])],
        initializer=inits,
    )
    # Initializers listed as graph inputs too (old exporters do this) must not become profiles.
    graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.fixture
def qdq_onnx(tmp_path) -> Path:
    return write_onnx(tmp_path / "model.onnx")


# --- a fake `tensorrt` module --------------------------------------------------------------------


class Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


ENGINE_INFO_TRT10 = {
    "Layers": [
        {
            "Name": "gemm",
            "LayerType": "CaskGemmMatrixMultiply",
            "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear Int8 format (kLINEAR)"}],
            "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP16 format (kLINEAR)"}],
        },
        {
            "Name": "softmax",
            "LayerType": "Softmax",
            "Inputs": [{"Name": "y", "Format/Datatype": "Row major linear FP16 format (kLINEAR)"}],
            "Outputs": [{"Name": "z", "Format/Datatype": "Row major linear FP32 format (kLINEAR)"}],
        },
    ],
    "Bindings": ["input_ids", "out"],
}


def make_fake_trt(version: str, calls: dict, build_fails: bool = False, parse_ok: bool = True):
    """A stand-in for `tensorrt` that records what the builder is asked to do.

    TensorRT 11's fake has no BuilderFlag.FP16/INT8 (removed there), so setting one would fail.
    """
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class ILogger:
        Severity = Severity

        def __init__(self):
            pass

    trt.ILogger = ILogger
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    )
    flags = {"TF32": 0, "SPARSE_WEIGHTS": 1} | ({"FP16": 2, "INT8": 3} if major < 11 else {})
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.ProfilingVerbosity = enum.IntEnum(
        "ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "DETAILED": 1}
    )
    trt.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})

    class TimingCache:
        def __init__(self, data: bytes):
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+tuned"

    class BuilderConfig:
        def __init__(self):
            self.profiling_verbosity = None
            self.cache = None
            calls["config"] = self

        def set_memory_pool_limit(self, pool, size):
            calls["pool_limit"] = (pool, size)

        def set_flag(self, flag):
            calls.setdefault("flags", []).append(flag.name)

        def add_optimization_profile(self, profile):
            calls.setdefault("profiles", []).append(profile.shapes)
            return 0

        def create_timing_cache(self, data):
            calls.setdefault("cache_created_from", []).append(bytes(data))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.data == b"incompatible":
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's names
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls["built_with_verbosity"] = config.profiling_verbosity
            if build_fails:
                self.logger.log(Severity.ERROR, "out of workspace for tactic 7")
                return None
            return b"ENGINE-BYTES"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["parsed"] = path
            return parse_ok

        def get_error(self, i):
            return "In node 3 (Foo): unsupported operator"

    class Engine:
        def create_engine_inspector(self):
            inspector = types.SimpleNamespace()
            inspector.get_engine_information = lambda fmt: json.dumps(ENGINE_INFO_TRT10)
            return inspector

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            calls["deserialized"] = bytes(data)
            return Engine()

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(environment, "cuda_device_names", lambda: ["NVIDIA Fake GPU"])


def install_fake_trt(monkeypatch, version: str, **kwargs) -> dict:
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt(version, calls, **kwargs))
    return calls


# --- versions and precision ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.13.3.9", (10, 13, 3)),
        ("11.0", (11, 0, 0)),
        ("10", (10, 0, 0)),
        ("10.9.0b1", (10, 9, 0)),
    ],
)
def test_parse_trt_version(text, expected):
    assert parse_trt_version(text) == expected


def test_parse_trt_version_rejects_garbage():
    with pytest.raises(QtoolError, match="cannot read"):
        parse_trt_version("unknown")


def test_trt10_weak_typing_sets_fp16_and_int8_for_qdq():
    plan = plan_precision("10.13.3.9", EngineConfig(), has_qdq=True)
    assert not plan.strongly_typed
    assert plan.builder_flags == ("FP16", "INT8")
    assert plan.trtexec_flags == ("--fp16", "--int8")
    assert plan.network_flags == ()


def test_trt10_without_qdq_or_fp16():
    assert plan_precision("10.1", EngineConfig(), has_qdq=False).builder_flags == ("FP16",)
    plan = plan_precision("10.1", EngineConfig(fp16=False), has_qdq=False)
    assert plan.builder_flags == () and plan.trtexec_flags == ()
    assert "fp32 only" in plan.note


def test_trt10_strongly_typed_on_request():
    plan = plan_precision("10.8.0", EngineConfig(strongly_typed=True), has_qdq=True)
    assert plan.strongly_typed
    assert plan.network_flags == ("STRONGLY_TYPED",)
    assert plan.builder_flags == ()
    assert plan.trtexec_flags == ("--stronglyTyped",)


@pytest.mark.parametrize("strongly_typed", [None, True])
def test_trt11_is_always_strongly_typed_without_removed_flags(strongly_typed):
    config = EngineConfig(strongly_typed=strongly_typed, fp16=True)
    plan = plan_precision("11.4.1", config, has_qdq=True)
    assert plan.strongly_typed
    assert plan.builder_flags == () and plan.network_flags == () and plan.trtexec_flags == ()


def test_trt11_refuses_weak_typing():
    with pytest.raises(QtoolError, match="no weakly typed"):
        plan_precision("11.0.0", EngineConfig(strongly_typed=False), has_qdq=True)


def test_old_tensorrt_is_refused():
    with pytest.raises(QtoolError, match="too old"):
        plan_precision("8.6.1", EngineConfig(), has_qdq=True)


# --- profiles ------------------------------------------------------------------------------------


def test_one_profile_per_bert_input():
    config = EngineConfig(min_shape=(1, 16), opt_shape=(8, 128), max_shape=(32, 256))
    inputs = [OnnxInput(n, ("batch", "seq")) for n in BERT_INPUTS]
    profiles = make_profiles(inputs, config)
    assert [p.name for p in profiles] == list(BERT_INPUTS)
    assert all(p.min == (1, 16) and p.opt == (8, 128) and p.max == (32, 256) for p in profiles)


def test_profile_checks_fixed_dims():
    config = EngineConfig(min_shape=(1, 128), opt_shape=(4, 128), max_shape=(8, 128))
    assert make_profiles([OnnxInput("input_ids", (None, 128))], config)[0].max == (8, 128)
    with pytest.raises(QtoolError, match="fixed seq of 64"):
        make_profiles([OnnxInput("input_ids", ("batch", 64))], config)
    with pytest.raises(QtoolError, match=r"expects \[batch, seq\]"):
        make_profiles([OnnxInput("pixel_values", ("b", 3, 224, 224))], config)
    with pytest.raises(QtoolError, match="no inputs"):
        make_profiles([], config)


def test_engine_config_orders_shapes_and_reads_yaml_lists():
    config = EngineConfig.model_validate({"min_shape": [2, 8], "max_shape": [64, 512]})
    assert config.min_shape == (2, 8) and config.max_shape == (64, 512)
    with pytest.raises(ValidationError, match="min <= opt <= max"):
        EngineConfig(min_shape=(16, 16), opt_shape=(8, 128))
    with pytest.raises(ValidationError):
        EngineConfig(builder_optimization_level=6)


def test_read_onnx(tmp_path, qdq_onnx):
    summary = read_onnx(qdq_onnx)
    assert [i.name for i in summary.inputs] == list(BERT_INPUTS)  # initializers left out
    assert summary.inputs[0].dims == ("batch", "seq")
    assert (summary.num_quantize, summary.num_dequantize) == (1, 1) and summary.has_qdq
    assert not read_onnx(write_onnx(tmp_path / "f.onnx", qdq=False)).has_qdq
    with pytest.raises(QtoolError, match="not found"):
        read_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx at all")
    with pytest.raises(QtoolError, match="not a readable ONNX"):
        read_onnx(tmp_path / "junk.onnx")


# --- trtexec -------------------------------------------------------------------------------------


def _command(version: str, config: EngineConfig, qdq: bool = True) -> str:
    inputs = [OnnxInput(n, ("batch", "seq")) for n in ("input_ids", "attention_mask")]
    return trtexec_command(
        "m.onnx",
        "m.engine",
        make_profiles(inputs, config),
        plan_precision(version, config, has_qdq=qdq),
        config,
        "cache/timing.cache",
    )


def test_trtexec_command_trt10():
    assert _command("10.13.3.9", EngineConfig()) == (
        "trtexec --onnx=m.onnx --saveEngine=m.engine "
        "--minShapes=input_ids:1x16,attention_mask:1x16 "
        "--optShapes=input_ids:8x128,attention_mask:8x128 "
        "--maxShapes=input_ids:32x128,attention_mask:32x128 "
        "--memPoolSize=workspace:4096M --timingCacheFile=cache/timing.cache "
        "--fp16 --int8 --profilingVerbosity=detailed"
    )


def test_trtexec_command_trt10_strongly_typed_and_opt_level():
    command = _command("10.8", EngineConfig(strongly_typed=True, builder_optimization_level=5))
    assert "--stronglyTyped --builderOptimizationLevel=5" in command
    assert "--fp16" not in command and "--int8" not in command


def test_trtexec_command_trt11():
    config = EngineConfig(workspace_mib=1024, max_shape=(64, 384))
    assert _command("11.4.1", config) == (
        "trtexec --onnx=m.onnx --saveEngine=m.engine "
        "--minShapes=input_ids:1x16,attention_mask:1x16 "
        "--optShapes=input_ids:8x128,attention_mask:8x128 "
        "--maxShapes=input_ids:64x384,attention_mask:64x384 "
        "--memPoolSize=workspace:1024M --timingCacheFile=cache/timing.cache "
        "--profilingVerbosity=detailed"
    )
    for removed in ("--fp16", "--int8", "--best"):
        assert removed not in _command("11.0", EngineConfig(fp16=True))


def test_trtexec_command_quotes_paths():
    inputs = [OnnxInput("input_ids", ("b", "s"))]
    config = EngineConfig()
    plan = plan_precision("10.1", config, has_qdq=False)
    command = trtexec_command(
        "my model.onnx", "out/e.engine", make_profiles(inputs, config), plan, config, None
    )
    assert command.startswith("trtexec '--onnx=my model.onnx' --saveEngine=out/e.engine ")
    assert "--timingCacheFile" not in command


def test_dry_run_writes_nothing(tmp_path, qdq_onnx):
    before = sorted(tmp_path.iterdir())
    command = dry_run(qdq_onnx, tmp_path / "m.engine", EngineConfig(), trt_version="11.0")
    assert command.startswith("trtexec --onnx=")
    assert f"--timingCacheFile={tmp_path / 'timing.cache'}" in command
    assert "token_type_ids:32x128" in command
    assert "--fp16" not in command
    assert "--fp16 --int8" in dry_run(qdq_onnx, tmp_path / "m.engine", EngineConfig(), "10.3")
    assert sorted(tmp_path.iterdir()) == before


def test_dry_run_without_tensorrt_assumes_a_version(monkeypatch, tmp_path, qdq_onnx):
    monkeypatch.setattr("qtoolkit.engine.plan.installed_tensorrt_version", lambda: None)
    plan = plan_build(qdq_onnx, tmp_path / "m.engine", EngineConfig(timing_cache=tmp_path / "c"))
    assert plan.trt_version_assumed and plan.precision.trt_version == ASSUMED_TRT_VERSION
    assert f"--timingCacheFile={tmp_path / 'c'}" in plan.trtexec_command


# --- environment errors --------------------------------------------------------------------------


def test_missing_tensorrt_is_one_line(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(QtoolError) as err:
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())
    message = str(err.value)
    assert "TensorRT is not installed" in message and "qtoolkit[trt]" in message
    assert "docker run --gpus all" in message and "\n" not in message
    assert not (tmp_path / "m.engine").exists()


def test_missing_gpu_is_one_line(monkeypatch, qdq_onnx, tmp_path):
    install_fake_trt(monkeypatch, "10.13.3.9")
    monkeypatch.setattr(environment, "cuda_device_names", lambda: [])
    with pytest.raises(QtoolError, match="no NVIDIA GPU is visible") as err:
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())
    assert "docker run --gpus all" in str(err.value) and "\n" not in str(err.value)


def test_missing_both_says_neither(monkeypatch, qdq_onnx, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(environment, "cuda_device_names", lambda: [])
    with pytest.raises(QtoolError, match="TensorRT and an NVIDIA GPU.*neither"):
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())


def test_cuda_device_names_through_the_driver(monkeypatch):
    class FakeLibcuda:
        def cuInit(self, flags):
            return 0

        def cuDeviceGetCount(self, count_ref):
            count_ref._obj.value = 1
            return 0

        def cuDeviceGet(self, device_ref, index):
            device_ref._obj.value = index
            return 0

        def cuDeviceGetName(self, buf, size, device):
            buf.value = b"NVIDIA H100 80GB HBM3"
            return 0

    monkeypatch.setattr(environment, "_LIBCUDA", ("libcuda.so.1",))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibcuda())
    assert environment.cuda_device_names() == ["NVIDIA H100 80GB HBM3"]


def test_cuda_device_names_without_a_driver(monkeypatch):
    monkeypatch.setattr(environment, "_LIBCUDA", ("libqtoolkit-no-such-cuda.so.1",))
    assert environment.cuda_device_names() == []


def test_runtime_needs_tensorrt_and_cuda(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(QtoolError, match="TensorRT is not installed"):
        EngineRunner(tmp_path / "m.engine")
    install_fake_trt(monkeypatch, "10.13.3.9")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(QtoolError, match="CUDA build of torch"):
        EngineRunner(tmp_path / "m.engine")


def test_torch_dtype_for_trt_types():
    import torch

    DataType = enum.Enum("DataType", ["FLOAT", "HALF", "INT64", "INT8", "FP8"])
    assert torch_dtype_for(DataType.FLOAT) is torch.float32
    assert torch_dtype_for(DataType.HALF) is torch.float16
    assert torch_dtype_for(DataType.INT64) is torch.int64
    with pytest.raises(QtoolError, match="FP8 is not supported"):
        torch_dtype_for(DataType.FP8)


# --- inspector, report, timing cache -------------------------------------------------------------


def test_layer_precisions_trt10_and_trt11_formats():
    records = layer_precisions(json.dumps(ENGINE_INFO_TRT10))
    assert [(r["name"], r["precision"]) for r in records] == [("gemm", "INT8"), ("softmax", "FP32")]
    assert records[0]["outputs"] == ["FP16"]
    trt11 = {
        "Layers": [
            {
                "Name": "gemm",
                "LayerType": "Gemm",
                "Inputs": [{"Name": "x", "Format": "Row major linear", "DataType": "Int8"}],
                "Outputs": [{"Name": "y", "Format": "Row major linear", "DataType": "Half"}],
            }
        ],
        "I/O Tensors": [{"Name": "x", "IOMode": "Input", "DataType": "Int64"}],
    }
    assert layer_precisions(trt11)[0]["precision"] == "INT8"
    names_only = layer_precisions({"Layers": ["a", "b"]})
    summary = summarize_layers(records + names_only)
    assert summary["count"] == 4
    assert summary["by_precision"] == {"FP32": 1, "INT8": 1, "unknown": 2}


def test_write_build_report(tmp_path, qdq_onnx):
    plan = plan_build(qdq_onnx, tmp_path / "bert.engine", EngineConfig(), trt_version="10.13.3.9")
    report = BuildReport(
        plan=plan,
        gpu="NVIDIA Fake GPU",
        build_seconds=12.3456,
        engine_bytes=1234,
        timing_cache={"path": "timing.cache", "loaded_bytes": 0},
        layers=summarize_layers(layer_precisions(ENGINE_INFO_TRT10)),
    )
    path = write_build_report(report)
    assert path == tmp_path / "bert.build.json" == build_report_path(plan.engine_path)
    data = json.loads(path.read_text())
    assert data["tensorrt_version"] == "10.13.3.9"
    assert data["gpu"] == "NVIDIA Fake GPU"
    assert data["build_seconds"] == 12.346
    assert data["precision"]["builder_flags"] == ["FP16", "INT8"]
    assert data["profiles"][2] == {
        "input": "token_type_ids",
        "min": [1, 16],
        "opt": [8, 128],
        "max": [32, 128],
    }
    assert data["layers"]["by_precision"] == {"FP32": 1, "INT8": 1}
    assert data["trtexec"] == plan.trtexec_command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert.build.json", "model.onnx"]


def test_timing_cache_load_refuse_and_save(tmp_path, monkeypatch):
    calls: dict = {}
    trt = make_fake_trt("10.13.3.9", calls)
    config = trt.Builder(None).create_builder_config()
    path = tmp_path / "timing.cache"
    state = attach_timing_cache(config, path)  # no file: fresh cache
    assert state.loaded_bytes == 0 and not state.refused and config.cache.data == b""
    path.write_bytes(b"old-cache")
    state = attach_timing_cache(config, path)
    assert state.loaded_bytes == len(b"old-cache") and config.cache.data == b"old-cache"
    save_timing_cache(config, state)
    assert path.read_bytes() == b"old-cache+tuned" and state.saved_bytes == 15
    path.write_bytes(b"incompatible")  # e.g. written by another TensorRT version
    state = attach_timing_cache(config, path)
    assert state.refused and config.cache.data == b""
    assert [p.name for p in tmp_path.iterdir()] == ["timing.cache"]  # no temporary left over


# --- end to end against the fake -----------------------------------------------------------------


def test_build_trt10_end_to_end(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    calls = install_fake_trt(monkeypatch, "10.13.3.9")
    (tmp_path / "timing.cache").write_bytes(b"earlier")
    config = EngineConfig(
        min_shape=(1, 8), opt_shape=(4, 64), max_shape=(16, 128), workspace_mib=512
    )
    build = build_engine(qdq_onnx, tmp_path / "bert.engine", config)

    assert calls["parsed"] == str(qdq_onnx)
    assert calls["network_flags"] == 0
    assert calls["flags"] == ["FP16", "INT8"]
    assert calls["pool_limit"][1] == 512 * 2**20 and calls["pool_limit"][0].name == "WORKSPACE"
    assert calls["built_with_verbosity"].name == "DETAILED"
    assert calls["profiles"] == [{n: ((1, 8), (4, 64), (16, 128)) for n in BERT_INPUTS}]
    assert calls["cache_created_from"] == [b"earlier"]
    assert (tmp_path / "timing.cache").read_bytes() == b"earlier+tuned"
    assert (tmp_path / "bert.engine").read_bytes() == b"ENGINE-BYTES"
    assert calls["deserialized"] == b"ENGINE-BYTES"

    report = json.loads(build.report_path.read_text())
    assert report["gpu"] == "NVIDIA Fake GPU" and report["engine_bytes"] == 12
    assert report["timing_cache"]["loaded_bytes"] == 7
    assert report["layers"]["by_precision"] == {"FP32": 1, "INT8": 1}
    script = build.trtexec_script.read_text()
    assert script.startswith("#!/bin/sh\n") and "--fp16 \\\n    --int8" in script
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bert.build.json",
        "bert.engine",
        "bert.trtexec.sh",
        "model.onnx",
        "timing.cache",
    ]


def test_build_trt10_strongly_typed(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    calls = install_fake_trt(monkeypatch, "10.13.3.9")
    build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig(strongly_typed=True))
    assert calls["network_flags"] == 1 << 1  # 1 << int(STRONGLY_TYPED)
    assert "flags" not in calls


def test_build_trt11_sets_no_removed_flags(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    calls = install_fake_trt(monkeypatch, "11.4.1")
    build = build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig(fp16=True))
    assert calls["network_flags"] == 0  # strongly typed by default in TensorRT 11
    assert "flags" not in calls
    assert build.report.plan.precision.strongly_typed
    assert "--fp16" not in build.trtexec_script.read_text()
    assert json.loads(build.report_path.read_text())["tensorrt_version"] == "11.4.1"


def test_build_timing_cache_from_config(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    install_fake_trt(monkeypatch, "10.13.3.9")
    shared = tmp_path / "caches" / "shared.cache"
    build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig(timing_cache=shared))
    assert shared.read_bytes() == b"+tuned"
    assert not (tmp_path / "timing.cache").exists()


def test_build_reports_parser_and_builder_errors(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    install_fake_trt(monkeypatch, "10.13.3.9", parse_ok=False)
    with pytest.raises(QtoolError, match="could not parse.*unsupported operator"):
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())
    install_fake_trt(monkeypatch, "10.13.3.9", build_fails=True)
    with pytest.raises(QtoolError, match="failed to build the engine: out of workspace"):
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())
    assert not (tmp_path / "m.engine").exists()
    with pytest.raises(QtoolError, match="overwrite its ONNX"):
        build_engine(qdq_onnx, qdq_onnx, EngineConfig())


def test_importing_engine_package_is_light():
    code = (
        "import sys, qtoolkit.engine; "
        "heavy = [m for m in ('tensorrt', 'torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_build_checks_the_model_before_the_machine(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(environment, "cuda_device_names", lambda: [])
    fixed = write_onnx(tmp_path / "fixed.onnx", seq=64)
    with pytest.raises(QtoolError, match="fixed seq of 64"):
        build_engine(fixed, tmp_path / "m.engine", EngineConfig())
    with pytest.raises(QtoolError, match="not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "m.engine", EngineConfig())
