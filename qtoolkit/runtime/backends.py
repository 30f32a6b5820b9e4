"""Backends, registered by name: a runtime with a precision, e.g. `ort-int8` (ONNX Runtime CPU
on a QDQ ONNX file), `ov-int8` (OpenVINO CPU on the same file) or `trt-int8` (a TensorRT
engine). The recipe's `bench.backends`, the CLI and the benchmark read this one table. Light to
import: no runtime is loaded here.

ONNX Runtime and OpenVINO on the CPU run the same ONNX files, so they are one family: their
speed-ups are against `ort-fp32` when it is measured. `ov-bf16` is OpenVINO's default precision,
bf16 on CPUs with native bf16 (AMX, AVX512_BF16) and f32 elsewhere; the benchmark records which
one the compiled model actually used."""

from __future__ import annotations

from dataclasses import dataclass

from qtoolkit.errors import QtoolError

__all__ = ["BACKENDS", "CPU_FAMILY", "BackendSpec", "get_backend"]


@dataclass(frozen=True)
class BackendSpec:
    name: str
    runtime: str  # torch | onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    artifact: str  # float-checkpoint | quantized-checkpoint | onnx-fp32 | onnx-int8 | engine
    family: str  # speed-ups compare members of one family with its float member
    provider: str | None = None  # ONNX Runtime execution provider
    needs_cuda: bool = False
    inference_precision: str | None = None  # OpenVINO INFERENCE_PRECISION_HINT; None: default


CPU_FAMILY = "onnx-cpu"  # ONNX Runtime and OpenVINO on the CPU, on the same ONNX files


def _ort(name: str, precision: str, provider: str, family: str) -> BackendSpec:
    return BackendSpec(
        name, "onnxruntime", precision, f"onnx-{precision}", family, provider, "CPU" not in provider
    )


BACKENDS: dict[str, BackendSpec] = {
    b.name: b
    for b in (
        BackendSpec("torch-fp32", "torch", "fp32", "float-checkpoint", "torch"),
        BackendSpec("torch-fp16", "torch", "fp16", "float-checkpoint", "torch", needs_cuda=True),
        BackendSpec("torch-fakequant", "torch", "int8", "quantized-checkpoint", "torch"),
        _ort("ort-fp32", "fp32", "CPUExecutionProvider", CPU_FAMILY),
        _ort("ort-int8", "int8", "CPUExecutionProvider", CPU_FAMILY),
        _ort("ort-cuda-fp32", "fp32", "CUDAExecutionProvider", "ort-cuda"),
        _ort("ort-cuda-int8", "int8", "CUDAExecutionProvider", "ort-cuda"),
        _ort("ort-trt-fp32", "fp32", "TensorrtExecutionProvider", "ort-tensorrt"),
        _ort("ort-trt-int8", "int8", "TensorrtExecutionProvider", "ort-tensorrt"),
        BackendSpec("ov-fp32", "openvino", "fp32", "onnx-fp32", CPU_FAMILY, None, False, "f32"),
        BackendSpec("ov-bf16", "openvino", "bf16", "onnx-fp32", CPU_FAMILY),
        BackendSpec("ov-int8", "openvino", "int8", "onnx-int8", CPU_FAMILY),
        BackendSpec("trt-int8", "tensorrt", "int8", "engine", "tensorrt", needs_cuda=True),
        BackendSpec("trt-fp16", "tensorrt", "fp16", "engine", "tensorrt", needs_cuda=True),
    )
}


def get_backend(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise QtoolError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]
