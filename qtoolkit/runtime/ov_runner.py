"""OpenVINO on the CPU as a runner, for ONNX files (fp32 or qtool's QDQ) and OpenVINO IR.

OpenVINO turns the Q/DQ pairs of a QDQ ONNX into its own int8 kernels (FakeQuantize fused into
the GEMMs), so qtool's export runs on it unchanged. Its CPU plugin picks the precision of
everything else itself: bf16 on CPUs with native bf16 (AMX / AVX512_BF16), else f32. A runner
therefore reads back what the compiled model uses (`INFERENCE_PRECISION_HINT`, the execution
devices, how many kernels run in int8) instead of assuming it.

Settings, from the recipe's `bench` section: INFERENCE_NUM_THREADS = bench.threads,
PERFORMANCE_HINT = bench.performance_hint (LATENCY: one stream, NUM_STREAMS=1, all threads on
one request), INFERENCE_PRECISION_HINT only when a backend forces it (ov-fp32: f32).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qtoolkit.errors import QtoolError
from qtoolkit.runtime.runner import RuntimeUnavailable, named_feeds

__all__ = [
    "OpenVinoRunner",
    "check_model_file",
    "import_openvino",
    "openvino_error",
    "native_bf16",
    "openvino_missing",
    "ov_compile_config",
]

INSTALL_HINT = "pip install 'qtoolkit[openvino]' (or pip install openvino)"
# OpenVINO element type names -> the precision names qtool uses elsewhere.
_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


def openvino_missing() -> str | None:
    """Why OpenVINO cannot run here (one line), or None."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return f"OpenVINO is not installed: {INSTALL_HINT}"
    return None


def import_openvino() -> Any:
    reason = openvino_missing()
    if reason:
        raise RuntimeUnavailable(reason)
    import openvino

    return openvino


def native_bf16(core: Any = None) -> bool:
    """Whether OpenVINO's CPU plugin has native bf16 here (its default precision is then bf16)."""
    core = core or import_openvino().Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ov_compile_config(
    threads: int | None, inference_precision: str | None, hint: str = "latency"
) -> dict[str, str]:
    """CPU plugin properties (strings, as OpenVINO parses them)."""
    config = {"PERFORMANCE_HINT": hint.upper()}
    if hint == "latency":
        config["NUM_STREAMS"] = "1"
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    if inference_precision:
        config["INFERENCE_PRECISION_HINT"] = inference_precision
    return config


# Executed layer types that do the GEMM work ("Subgraph": fused snippets such as attention).
_GEMM_LAYERS = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution", "Subgraph")


def _gemm_precisions(compiled: Any) -> dict[str, dict[str, int]]:
    """layer type -> {precision: count} of the GEMM kernels the compiled model executes."""
    counts: dict[str, dict[str, int]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or "runtimePrecision" not in info:
            continue
        layer = str(info["layerType"].astype(str))
        if layer in _GEMM_LAYERS:
            precision = str(info["runtimePrecision"].astype(str))
            by_precision = counts.setdefault(layer, {})
            by_precision[precision] = by_precision.get(precision, 0) + 1
    return counts


def openvino_error(exc: BaseException) -> str:
    """The line of an OpenVINO error that says what is wrong: its messages start with where
    they were raised ("Exception from src/inference/src/cpp/core.cpp:84:", "Check ... failed
    at ...") and end with the reason."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return (said or lines or [type(exc).__name__])[-1]


def check_model_file(path: Path) -> None:
    """What OpenVINO would fail on with a line of its own source code, said first: an ONNX file
    that is not ONNX, an IR (.xml) that is not one or whose weights (.bin) are missing."""
    if path.suffix == ".onnx":
        import onnx

        try:
            onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
            raise QtoolError(
                f"{path}: not a readable ONNX model ({type(exc).__name__}); export it again"
            ) from None
    elif path.suffix == ".xml":
        import xml.etree.ElementTree as ET

        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise QtoolError(f"{path}: not an OpenVINO IR ({exc})") from None
        if root.tag != "net":
            raise QtoolError(f"{path}: not an OpenVINO IR (its root is <{root.tag}>, not <net>)")
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise QtoolError(
                f"{path}: its weights file {weights.name} is missing (an OpenVINO IR is the .xml "
                "and the .bin beside it); copy both"
            )


class OpenVinoRunner:
    runtime = "openvino"
    device = "cpu"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        inference_precision: str | None = None,
        hint: str = "latency",
    ) -> None:
        ov = import_openvino()
        self.path = Path(path)
        if not self.path.is_file():
            raise QtoolError(f"model not found: {self.path}")
        check_model_file(self.path)
        core = ov.Core()
        self.config = ov_compile_config(threads, inference_precision, hint)
        try:
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", self.config)
        except RuntimeError as exc:
            raise QtoolError(
                f"OpenVINO cannot compile {self.path}: {openvino_error(exc)}"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.output_names = tuple(o.get_any_name() for o in self.compiled.outputs)
        self._dtypes = {
            i.get_any_name(): i.get_element_type().to_dtype() for i in self.compiled.inputs
        }
        hinted = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.inference_precision = _PRECISION.get(hinted, hinted)
        self.gemm_precisions = _gemm_precisions(self.compiled)
        gemms = [(k, n) for p in self.gemm_precisions.values() for k, n in p.items()]
        int8 = sum(n for k, n in gemms if k in ("i8", "u8"))
        self.int8_kernels = int8
        self.native_bf16 = native_bf16(core)
        self.precision = "int8" if int8 else self.inference_precision
        self.requested_precision = inference_precision

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        result = self.request.infer(named_feeds(self.input_names, batch, self._dtypes))
        # The request reuses its output buffers: copy before the next call overwrites them.
        return {o.get_any_name(): np.array(result[o]) for o in self.compiled.outputs}

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        ov = import_openvino()
        # A request of its own: tensors set on it keep their shape, which __call__'s must not.
        request = self.compiled.create_infer_request()
        bound = named_feeds(self.input_names, feeds, self._dtypes)
        for name, array in bound.items():
            request.set_tensor(name, ov.Tensor(array, shared_memory=True))

        def call(_shared: Any = bound) -> Any:  # the default keeps the shared arrays alive
            return request.infer()

        return call

    def details(self) -> dict[str, Any]:
        """What the benchmark records: the precision OpenVINO actually used, and why."""
        return {
            "inference_precision": self.inference_precision,
            "requested_precision": self.requested_precision or "default",
            "native_bf16": self.native_bf16,
            "int8_kernels": self.int8_kernels,
            "gemm_precisions": self.gemm_precisions,
            "execution_devices": list(self.compiled.get_property("EXECUTION_DEVICES")),
            "config": self.config,
        }
