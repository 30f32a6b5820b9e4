"""TensorRT failures a GPU user hits first, each one line; the fake's strictness; API drift.

Runs on CPU against fake_tensorrt.py, which has only the names of the real 10.16 / 11.1 bindings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from qtoolkit.engine import build_engine, environment, plan_precision
from qtoolkit.engine.runtime import EngineRunner
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

from .fake_tensorrt import make_fake_trt
from .test_engine import write_onnx
from .trt_api_spec import API

ENGINE_DIR = Path(__file__).resolve().parents[2] / "qtoolkit" / "engine"
MODULE_NAMES = {"Builder", "OnnxParser", "Runtime", "ILogger", "__version__"}


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(environment, "cuda_device_names", lambda: ["NVIDIA Fake GPU"])


def _install(monkeypatch, version: str, **kwargs) -> dict:
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt(version, calls, **kwargs))
    return calls


@pytest.mark.parametrize("version", ["10.16.0", "11.1.0"])
def test_the_fake_is_strict(version):
    trt = make_fake_trt(version, {})
    config = trt.Builder(None).create_builder_config()
    with pytest.raises(AttributeError, match="no attribute 'max_workspace_size'"):
        config.max_workspace_size = 1 << 30  # removed in TensorRT 10
    with pytest.raises(AttributeError):
        trt.BuilderFlag.STRICT_TYPES  # noqa: B018 - removed in 10
    if version.startswith("11"):
        for gone in ("FP16", "INT8", "BF16", "OBEY_PRECISION_CONSTRAINTS"):
            assert not hasattr(trt.BuilderFlag, gone)
        assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        with pytest.raises(AttributeError, match="int8_calibrator"):
            config.int8_calibrator  # noqa: B018 - removed in 11
    else:
        assert {"FP16", "INT8"} <= {f.name for f in trt.BuilderFlag}


def _engine_attribute_uses() -> set[tuple[str, str]]:
    """(`trt.X`, member) pairs used anywhere in qtoolkit/engine, e.g. ('MemoryPoolType',
    'WORKSPACE'); member '' for a bare `trt.X`."""
    uses = set()
    pattern = re.compile(r"\b(?:trt|self\._trt)\.(\w+)(?:\.(\w+))?")
    for path in ENGINE_DIR.glob("*.py"):
        uses |= set(pattern.findall(path.read_text()))
    return uses


@pytest.mark.parametrize("major", [10, 11])
def test_engine_code_uses_only_real_tensorrt_names(major):
    """Code paths the fake does not run (the runtime's tensor I/O) are checked by name."""
    uses = _engine_attribute_uses()
    assert ("MemoryPoolType", "WORKSPACE") in uses  # the scan sees the code
    for name, member in uses:
        if name in MODULE_NAMES:
            continue
        assert name in API[major], f"trt.{name} is not in TensorRT {major}"
        if member:
            assert member in API[major][name], f"trt.{name}.{member} is not in TensorRT {major}"


@pytest.mark.parametrize("major", [10, 11])
def test_runtime_methods_exist(major):
    """The runtime's calls on engine and context objects, by name."""
    text = (ENGINE_DIR / "runtime.py").read_text()
    engine_calls = set(re.findall(r"self\.engine\.(\w+)", text))
    context_calls = set(re.findall(r"self\.context\.(\w+)", text))
    assert {"get_tensor_name", "get_tensor_mode", "get_tensor_dtype"} <= engine_calls
    assert engine_calls <= API[major]["ICudaEngine"]
    assert {"set_input_shape", "set_tensor_address", "execute_async_v3"} <= context_calls
    assert context_calls <= API[major]["IExecutionContext"]


def test_cuda_init_failure_is_one_line(monkeypatch, fake_gpu, tmp_path):
    _install(monkeypatch, "10.16.0", cuda_fails=True)
    with pytest.raises(QtoolError) as err:
        build_engine(write_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig())
    message = str(err.value)
    assert "could not initialise CUDA" in message and "nullptr" not in message
    assert "CUDA initialization failure with error: 35" in message  # TensorRT's own reason
    assert "nvidia-smi" in message and "\n" not in message
    assert not (tmp_path / "m.engine").exists()


def test_runtime_cuda_init_and_context_failures(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"ENGINE-BYTES")
    _install(monkeypatch, "11.1.0", cuda_fails=True)
    with pytest.raises(QtoolError, match="could not initialise CUDA.*error: 35"):
        EngineRunner(engine)
    _install(monkeypatch, "11.1.0", context_fails=True)
    with pytest.raises(QtoolError) as err:
        EngineRunner(engine)
    message = str(err.value)
    assert "could not create an execution context" in message
    assert "GPU memory (512 MiB) failed" in message and "\n" not in message


def test_supported_range_warnings():
    config = EngineConfig()
    assert plan_precision("10.16.0", config, True).warnings == ()
    assert plan_precision("11.4.0", config, True).warnings == ()  # fp16-ness unknown: no claim
    (old,) = plan_precision("10.3.0", config, True).warnings
    assert "older than qtoolkit supports" in old
    (new,) = plan_precision("12.0.0", config, True, has_fp16=True).warnings
    assert "newer than qtoolkit supports" in new
