"""qtoolkit.engine on CPU: pure decisions, error lines, and a build against a fake `tensorrt`.

The fake (fake_tensorrt.py) is strict: it has only the attributes the real TensorRT 10.16 / 11.1
bindings have, and records every call the builder makes, so the tests check what would be asked
of real TensorRT: profile shapes, flags per version, workspace, timing cache load/merge/save,
outputs written.
"""

from __future__ import annotations

import ctypes
import enum
import json
import subprocess
import sys
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
from qtoolkit.engine.profiles import OnnxInput
from qtoolkit.engine.report import BuildReport, build_report_path, write_build_report
from qtoolkit.engine.runtime import EngineRunner, torch_dtype_for
from qtoolkit.engine.timing_cache import attach_timing_cache, save_timing_cache
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

from .fake_tensorrt import ENGINE_INFO_TRT10, make_fake_trt

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


# --- the strict fake `tensorrt` (tests/unit/fake_tensorrt.py) ------------------------------------


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
        "--fp16 --int8 --profilingVerbosity=detailed --skipInference"
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
        "--profilingVerbosity=detailed --skipInference"
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
    text = dry_run(qdq_onnx, tmp_path / "m.engine", EngineConfig(), trt_version="11.0")
    *comments, command = text.splitlines()
    assert comments and all(c.startswith("# warning: ") for c in comments)  # fp32 ONNX on 11
    assert command.startswith("trtexec --onnx=")
    assert f"--timingCacheFile={tmp_path / 'timing.cache'}" in command
    assert "token_type_ids:32x128" in command
    assert "--fp16" not in command
    assert "--fp16 --int8" in dry_run(qdq_onnx, tmp_path / "m.engine", EngineConfig(), "10.3")
    assert sorted(tmp_path.iterdir()) == before


def test_dry_run_without_tensorrt_prints_both_versions(monkeypatch, tmp_path, qdq_onnx):
    monkeypatch.setattr(environment, "installed_tensorrt_version", lambda: None)
    monkeypatch.setattr("qtoolkit.engine.plan.installed_tensorrt_version", lambda: None)
    config = EngineConfig(timing_cache=tmp_path / "c")
    text = dry_run(qdq_onnx, tmp_path / "m.engine", config)
    lines = text.splitlines()
    commands = [line for line in lines if line.startswith("trtexec ")]
    assert len(commands) == 2  # one per version, never a silent guess
    assert lines[0] == "# weakly typed (TensorRT 10): fp16 kernels + explicit INT8 from Q/DQ"
    assert "--fp16 --int8" in commands[0] and "--fp16" not in commands[1]
    assert any(line.startswith("# strongly typed (TensorRT 11): fp32") for line in lines)
    assert sum(line.startswith("# warning:") for line in lines) == 1  # no "old 10.0" warning
    # The tiny ONNX is fp32: the TensorRT 11 block says it builds fp32 layers.
    assert any(line.startswith("# warning:") and "fp32" in line for line in lines)
    assert all(f"--timingCacheFile={tmp_path / 'c'}" in c for c in commands)
    with pytest.raises(QtoolError, match="pass --trt-version 10 or --trt-version 11"):
        plan_build(qdq_onnx, tmp_path / "m.engine", config)


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


def _cache_bytes(config) -> bytes:
    return config.get_timing_cache().serialize()


def test_timing_cache_load_refuse_and_save(tmp_path, monkeypatch):
    calls: dict = {}
    trt = make_fake_trt("10.13.3.9", calls)
    config = trt.Builder(None).create_builder_config()
    path = tmp_path / "timing.cache"
    state = attach_timing_cache(config, path)  # no file: fresh cache
    assert state.loaded_bytes == 0 and not state.refused and _cache_bytes(config) == b""
    path.write_bytes(b"old")
    state = attach_timing_cache(config, path)
    assert state.loaded_bytes == 3 and _cache_bytes(config) == b"old"
    config.get_timing_cache()._entries.add(b"tuned")  # what a build adds
    save_timing_cache(config, state)
    assert path.read_bytes() == b"old,tuned" and state.saved_bytes == 9
    assert state.merged_bytes == 0 and "combined" not in calls  # file unchanged since loading
    path.write_bytes(b"incompatible")  # e.g. written by another TensorRT version
    state = attach_timing_cache(config, path)
    assert state.refused and _cache_bytes(config) == b""
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["timing.cache", "timing.cache.lock"]  # no temporary left over


def test_timing_cache_save_merges_a_concurrent_build(tmp_path):
    calls: dict = {}
    trt = make_fake_trt("10.13.3.9", calls)
    path = tmp_path / "timing.cache"
    path.write_bytes(b"base")
    config = trt.Builder(None).create_builder_config()
    state = attach_timing_cache(config, path)
    config.get_timing_cache()._entries.add(b"mine")
    path.write_bytes(b"base,theirs")  # another build saved while this one ran
    save_timing_cache(config, state)
    # Last-writer-wins would have dropped "theirs".
    assert path.read_bytes() == b"base,mine,theirs"
    assert state.merged_bytes == len(b"base,theirs") and calls["combined"] == [b"base,theirs"]
    # A cache from another TensorRT does not combine: this build's (current) cache replaces it.
    path.write_bytes(b"incompatible")
    save_timing_cache(config, state)
    assert path.read_bytes() == b"base,mine,theirs"


def test_timing_cache_save_waits_for_the_lock(tmp_path):
    import threading
    import time

    from qtoolkit.engine.timing_cache import cache_lock

    trt = make_fake_trt("10.13.3.9", {})
    path = tmp_path / "timing.cache"
    config = trt.Builder(None).create_builder_config()
    state = attach_timing_cache(config, path)
    config.get_timing_cache()._entries.add(b"mine")
    saver = threading.Thread(target=save_timing_cache, args=(config, state))
    with cache_lock(path):  # e.g. another qtool process saving the same cache
        saver.start()
        time.sleep(0.3)
        assert saver.is_alive() and not path.exists()
    saver.join(5)
    assert not saver.is_alive() and path.read_bytes() == b"mine"


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
    assert (tmp_path / "timing.cache").read_bytes() == b"earlier,tuned"
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
        "timing.cache.lock",
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
    script = build.trtexec_script.read_text().splitlines()
    command = [line for line in script if not line.startswith("#")]
    assert command and not any(f in " ".join(command) for f in ("--fp16", "--int8", "--best"))
    report = json.loads(build.report_path.read_text())
    assert report["tensorrt_version"] == "11.4.1" and report["tensorrt_major"] == 11
    assert report["tensorrt_supported"] == "TensorRT 10.8+ (10.x) and 11.x"
    # The inspector's TensorRT 11 JSON ("I/O Tensors", split DataType) is read.
    assert report["layers"]["by_precision"] == {"INT8": 1}


def test_trt11_says_an_fp32_onnx_builds_fp32_layers(monkeypatch, fake_gpu, tmp_path, capsys):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    install_fake_trt(monkeypatch, "11.1.0")
    fp32 = write_onnx(tmp_path / "fp32.onnx")
    build = build_engine(fp32, tmp_path / "a.engine", EngineConfig())
    warnings = json.loads(build.report_path.read_text())["precision"]["warnings"]
    assert len(warnings) == 1 and "builds its non-quantized layers in fp32" in warnings[0]
    assert "--fp16" in warnings[0]  # says how to fix it
    assert "non-quantized layers in fp32" in capsys.readouterr().err  # and prints it
    assert "# warning: " in build.trtexec_script.read_text()

    model = onnx.load(str(fp32))  # an fp16 export holds fp16 initializers / casts
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(2, np.float16), "h"))
    onnx.save(model, str(tmp_path / "fp16.onnx"))
    assert read_onnx(tmp_path / "fp16.onnx").has_fp16 and not read_onnx(fp32).has_fp16
    build = build_engine(tmp_path / "fp16.onnx", tmp_path / "b.engine", EngineConfig())
    assert build.report.plan.precision.warnings == ()
    assert "fp16 from the ONNX" in build.report.plan.precision.note
    # TensorRT 10's weakly typed default needs no fp16 in the ONNX: no warning there.
    assert plan_precision("10.16", EngineConfig(), True, has_fp16=False).warnings == ()


def test_build_timing_cache_from_config(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    install_fake_trt(monkeypatch, "10.13.3.9")
    shared = tmp_path / "caches" / "shared.cache"
    build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig(timing_cache=shared))
    assert shared.read_bytes() == b"tuned"
    assert not (tmp_path / "timing.cache").exists()


def test_build_reports_parser_and_builder_errors(monkeypatch, fake_gpu, qdq_onnx, tmp_path):
    install_fake_trt(monkeypatch, "10.13.3.9", parse_ok=False)
    with pytest.raises(QtoolError, match="could not parse.*unsupported operator"):
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())
    install_fake_trt(monkeypatch, "10.13.3.9", build_fails=True)
    failed = r"failed to build m\.engine from .*: out of workspace"
    with pytest.raises(QtoolError, match=failed) as err:
        build_engine(qdq_onnx, tmp_path / "m.engine", EngineConfig())
    # The parser logged an error it recovered from before the build: only the build's is quoted.
    assert "recovered" not in str(err.value) and "\n" not in str(err.value)
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
