"""What a benchmark measures: backends (how a model runs) and targets (a named file on one).

A *backend* is a runtime with a precision, e.g. `ort-int8` (ONNX Runtime CPU on a QDQ ONNX
file) or `trt-int8` (a TensorRT engine); `BACKENDS` lists them. A *target* is one model file run
on one backend, under a name used in tables. Targets come from the recipe (`bench.backends`,
each on the file the recipe's stages write, and `bench.targets`) and from `NAME=PATH` strings
(the CLI's `--target`), where NAME is a backend (`ort-int8=x.onnx`), `LABEL:BACKEND`
(`qat:ort-int8=x.onnx`) or a plain label, the backend then read from the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qtoolkit.errors import QtoolError

if TYPE_CHECKING:
    from qtoolkit.recipe import Recipe

__all__ = [
    "BACKENDS",
    "ENGINE_FILE",
    "EXPORT_FILE",
    "BackendSpec",
    "BenchTarget",
    "default_path",
    "parse_target",
    "resolve_targets",
    "unavailable_reason",
]

# File names inside the export and engine stage folders.
EXPORT_FILE = "model.onnx"
ENGINE_FILE = "model.engine"


@dataclass(frozen=True)
class BackendSpec:
    name: str
    runtime: str  # torch | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | int8
    artifact: str  # float-checkpoint | quantized-checkpoint | onnx-fp32 | onnx-int8 | engine
    family: str  # speed-ups compare members of one family with its float member
    provider: str | None = None  # ONNX Runtime execution provider
    needs_cuda: bool = False


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
        _ort("ort-fp32", "fp32", "CPUExecutionProvider", "ort-cpu"),
        _ort("ort-int8", "int8", "CPUExecutionProvider", "ort-cpu"),
        _ort("ort-cuda-fp32", "fp32", "CUDAExecutionProvider", "ort-cuda"),
        _ort("ort-cuda-int8", "int8", "CUDAExecutionProvider", "ort-cuda"),
        _ort("ort-trt-fp32", "fp32", "TensorrtExecutionProvider", "ort-tensorrt"),
        _ort("ort-trt-int8", "int8", "TensorrtExecutionProvider", "ort-tensorrt"),
        BackendSpec("trt-int8", "tensorrt", "int8", "engine", "tensorrt", needs_cuda=True),
        BackendSpec("trt-fp16", "tensorrt", "fp16", "engine", "tensorrt", needs_cuda=True),
    )
}


@dataclass(frozen=True)
class BenchTarget:
    name: str
    backend: BackendSpec
    path: Path | None  # None: the backend has no default file in this recipe
    explicit: bool = False  # given by the user (a missing file is an error, not a skip)


def default_path(backend: BackendSpec, recipe: Recipe) -> Path | None:
    """The file the recipe's stages write for `backend`, or None (trt-fp16: give a path)."""
    from qtoolkit.fsutil import MARKER

    if backend.artifact == "float-checkpoint":
        from qtoolkit.models import resolve_model_ref
        from qtoolkit.pipeline.common import quant_source

        model_cfg, _ = quant_source(recipe)
        if model_cfg.path is None:
            return None
        try:
            return resolve_model_ref(model_cfg.path)
        except QtoolError:
            return Path(model_cfg.path)  # reported as missing, like any stage output
    if backend.artifact == "quantized-checkpoint":
        qat = recipe.stage_dir("qat")
        return qat if (qat / MARKER).is_file() else recipe.stage_dir("calibrated")
    if backend.artifact.startswith("onnx-"):
        onnx_path = recipe.stage_dir("export") / EXPORT_FILE
        if backend.precision == "int8":
            return onnx_path
        from qtoolkit.export import fp32_path_for

        return fp32_path_for(onnx_path)
    if backend.name == "trt-int8":
        return recipe.stage_dir("engine") / ENGINE_FILE
    return None


def _spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise QtoolError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]


def infer_backend(path: Path) -> BackendSpec:
    """The backend for a file: an engine, an ONNX model (int8 if it has Q/DQ or integer ops),
    a quantized checkpoint (PyTorch fake-quant) or a float checkpoint."""
    from qtoolkit.fsutil import MARKER

    if path.suffix in (".engine", ".plan"):
        return BACKENDS["trt-int8"]
    if path.suffix == ".onnx":
        import onnx

        if not path.is_file():
            raise QtoolError(f"benchmark target not found: {path}")
        graph = onnx.load(str(path), load_external_data=False).graph
        int8 = any(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") for n in graph.node)
        return BACKENDS["ort-int8" if int8 else "ort-fp32"]
    if path.is_dir():
        marker = path / MARKER
        fmt = json.loads(marker.read_text()).get("format") if marker.is_file() else None
        return BACKENDS["torch-fakequant" if fmt == "qtoolkit-quantized" else "torch-fp32"]
    raise QtoolError(f"benchmark target not found: {path}")


def parse_target(text: str, path: str | Path | None = None) -> BenchTarget:
    """`NAME=PATH` (or NAME and PATH apart), NAME being BACKEND, LABEL:BACKEND or LABEL."""
    if path is None:
        if "=" not in text:
            raise QtoolError(f"target '{text}' must look like NAME=PATH, e.g. ort-int8=model.onnx")
        text, path = text.split("=", 1)
    if not text.strip() or not str(path).strip():
        raise QtoolError(f"target '{text}={path}' needs both a name and a path")
    name, path = text.strip(), Path(path)
    label, _, backend = name.partition(":")
    if backend:
        return BenchTarget(label, _spec(backend), path, explicit=True)
    spec = BACKENDS.get(name) or infer_backend(path)
    return BenchTarget(name, spec, path, explicit=True)


def resolve_targets(recipe: Recipe, extra: Sequence[str | BenchTarget] = ()) -> list[BenchTarget]:
    """`bench.backends` on their default files, then `bench.targets`, then `extra` (NAME=PATH
    strings or targets); a later target with an existing name replaces it in place."""
    targets: dict[str, BenchTarget] = {}
    for name in recipe.bench.backends:
        spec = _spec(name)
        targets[name] = BenchTarget(name, spec, default_path(spec, recipe))
    given = [parse_target(k, v) for k, v in recipe.bench.targets.items()]
    given += [t if isinstance(t, BenchTarget) else parse_target(t) for t in extra]
    for target in given:
        targets[target.name] = target
    return list(targets.values())


def unavailable_reason(target: BenchTarget) -> str | None:
    """Why `target` cannot run here (a missing GPU, runtime or stage output), or None."""
    spec = target.backend
    if spec.runtime == "tensorrt":
        import torch

        from qtoolkit.engine import installed_tensorrt_version

        missing = [
            what
            for what, ok in (
                ("TensorRT", installed_tensorrt_version() is not None),
                ("a CUDA GPU", torch.cuda.is_available()),
            )
            if not ok
        ]
        if missing:
            return f"needs an NVIDIA GPU and TensorRT; this machine lacks {' and '.join(missing)}"
    elif spec.runtime == "onnxruntime" and spec.needs_cuda:
        import onnxruntime as ort

        if spec.provider not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {spec.provider} (onnxruntime-gpu)"
    elif spec.needs_cuda:
        import torch

        if not torch.cuda.is_available():
            return "needs a CUDA GPU (PyTorch fp16 is only measured on GPU)"
    if target.path is None:
        return f"no default file for {spec.name}: give one with --target {spec.name}=PATH"
    if not target.path.exists():
        if target.explicit:
            raise QtoolError(f"benchmark target {target.name} not found: {target.path}")
        return f"{target.path} not found (run the stage that writes it, or give --target)"
    return None
