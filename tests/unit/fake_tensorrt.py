"""A strict stand-in for the `tensorrt` module, per major version (10 or 11), for CPU tests.

Every object exposes only the names the real bindings have at that version (trt_api_spec.py):
reading or setting any other public attribute raises AttributeError, as TensorRT would, so a
call that drifted from the real API fails here. Method signatures use the bindings' argument
names, so a wrong keyword fails too. Calls are recorded in `calls` for the tests to check.

Knobs: `build_fails`, `parse_ok`, `cuda_fails` (Builder/Runtime raise pybind11's nullptr
TypeError), `context_fails` (create_execution_context returns None).
"""

from __future__ import annotations

import enum
import json
import types
from typing import Any

from .trt_api_spec import ENUM_VALUES, members

__all__ = ["ENGINE_INFO_TRT10", "ENGINE_INFO_TRT11", "make_fake_trt"]

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

# TensorRT 11: "I/O Tensors" instead of "Bindings", "Format" and "DataType" split.
ENGINE_INFO_TRT11 = {
    "Layers": [
        {
            "Name": "gemm",
            "LayerType": "Gemm",
            "Inputs": [{"Name": "x", "Format": "Row major linear", "DataType": "Int8"}],
            "Outputs": [{"Name": "y", "Format": "Row major linear", "DataType": "Float"}],
        }
    ],
    "I/O Tensors": [{"Name": "input_ids", "IOMode": "Input", "DataType": "Int64"}],
}

NULLPTR = "__init__(): factory function returned nullptr"


class _Strict:
    """Public attributes limited to the spec of `_api` at TensorRT `_major`."""

    _api = ""
    _major = 10

    def _check(self, name: str) -> None:
        if not name.startswith("_") and name not in members(self._major, self._api):
            raise AttributeError(
                f"'tensorrt.{self._api}' object has no attribute '{name}' (TensorRT {self._major})"
            )

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            object.__getattribute__(self, "_check")(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._check(name)
        object.__setattr__(self, name, value)


def _enum(major: int, name: str, base: type = enum.IntEnum) -> Any:
    values = ENUM_VALUES.get(major, {}).get(name)
    names = sorted(members(major, name))
    return base(name, values if values else {n: i for i, n in enumerate(names)})


def make_fake_trt(
    version: str,
    calls: dict,
    build_fails: bool = False,
    parse_ok: bool = True,
    cuda_fails: bool = False,
    context_fails: bool = False,
    engine_info: dict | None = None,
) -> types.ModuleType:
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    severity = _enum(major, "Severity")
    info = engine_info or (ENGINE_INFO_TRT11 if major >= 11 else ENGINE_INFO_TRT10)

    class Base(_Strict):
        _major = major

    class ILogger:  # subclassed by qtoolkit's logger: a plain Python base, as in pybind11
        Severity = severity

        def __init__(self):
            pass

    class ITimingCache(Base):
        _api = "ITimingCache"

        def __init__(self, data: bytes):
            self._entries = set(data.split(b",")) - {b""} if data else set()

        def serialize(self) -> bytes:
            return b",".join(sorted(self._entries))

        def combine(self, input_cache, ignore_mismatch):
            calls.setdefault("combined", []).append(input_cache.serialize())
            if b"incompatible" in input_cache._entries:
                return False
            self._entries |= input_cache._entries
            return True

    class IOptimizationProfile(Base):
        _api = "IOptimizationProfile"

        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - the bindings' names
            self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class IBuilderConfig(Base):
        _api = "IBuilderConfig"

        def __init__(self):
            self._verbosity = None
            self._cache = None
            self._opt_level = 3
            calls["config"] = self

        # properties are class attributes, so the strict check sees them by name
        profiling_verbosity = property(
            lambda self: self._verbosity, lambda self, v: object.__setattr__(self, "_verbosity", v)
        )
        builder_optimization_level = property(
            lambda self: self._opt_level, lambda self, v: object.__setattr__(self, "_opt_level", v)
        )

        def set_memory_pool_limit(self, pool, pool_size):
            calls["pool_limit"] = (pool, pool_size)

        def set_flag(self, flag):
            calls.setdefault("flags", []).append(flag.name)

        def add_optimization_profile(self, profile):
            calls.setdefault("profiles", []).append(profile._shapes)
            return 0

        def create_timing_cache(self, serialized_timing_cache):
            calls.setdefault("cache_created_from", []).append(bytes(serialized_timing_cache))
            return ITimingCache(bytes(serialized_timing_cache))

        def set_timing_cache(self, cache, ignore_mismatch):
            if b"incompatible" in cache._entries:
                return False
            object.__setattr__(self, "_cache", cache)
            return True

        def get_timing_cache(self):
            return self._cache

    class INetworkDefinition:
        pass

    class Builder(Base):
        _api = "Builder"

        def __init__(self, logger):
            if cuda_fails:
                logger.log(severity.ERROR, "CUDA initialization failure with error: 35")
                raise TypeError(NULLPTR)
            self._logger = logger

        def create_network(self, flags=0):
            calls["network_flags"] = flags
            return INetworkDefinition()

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            calls["built_with_verbosity"] = config.profiling_verbosity
            if build_fails:
                self._logger.log(severity.ERROR, "out of workspace for tactic 7")
                return None
            if config._cache is not None:
                config._cache._entries.add(b"tuned")
            return b"ENGINE-BYTES"

    class ParserError(Base):
        _api = "ParserError"

        def __str__(self):
            return "In node 3 (Foo): unsupported operator"

    class OnnxParser(Base):
        _api = "OnnxParser"

        def __init__(self, network, logger):
            self._logger = logger

        num_errors = property(lambda self: 0 if parse_ok else 1)

        def parse_from_file(self, model):
            calls["parsed"] = model
            # An error logged while parsing that the parser recovers from: a later failed
            # build must not quote it.
            self._logger.log(severity.ERROR, "parser: recovered from an unsupported attribute")
            return parse_ok

        def get_error(self, index):
            return ParserError()

    class EngineInspector(Base):
        _api = "EngineInspector"

        def get_engine_information(self, format):  # noqa: A002 - the bindings' name
            return json.dumps(info)

    class ICudaEngine(Base):
        _api = "ICudaEngine"

        def __init__(self, logger):
            self._logger = logger

        def create_engine_inspector(self):
            return EngineInspector()

        def create_execution_context(self):
            if context_fails:
                self._logger.log(severity.ERROR, "Requested amount of GPU memory (512 MiB) failed")
                return None
            return object()

    class Runtime(Base):
        _api = "Runtime"

        def __init__(self, logger):
            if cuda_fails:
                logger.log(severity.ERROR, "CUDA initialization failure with error: 35")
                raise TypeError(NULLPTR)
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            calls["deserialized"] = bytes(serialized_engine)
            return ICudaEngine(self._logger)

    trt.ILogger = ILogger
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    for name in (
        "NetworkDefinitionCreationFlag",
        "BuilderFlag",
        "MemoryPoolType",
        "ProfilingVerbosity",
        "LayerInformationFormat",
        "TensorIOMode",
        "DataType",
    ):
        setattr(trt, name, _enum(major, name))
    return trt
