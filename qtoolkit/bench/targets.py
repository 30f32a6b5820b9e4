"""What a benchmark measures: backends (how a model runs) and targets (a named file on one).

A *backend* is a runtime with a precision, e.g. `ort-int8` (ONNX Runtime CPU on a QDQ ONNX
file) or `trt-int8` (a TensorRT engine); `BACKENDS` lists them. A *target* is one model file run
on one backend, under a name used in tables. Targets come from the recipe (`bench.backends`,
each on the file the recipe's stages write, and `bench.targets`) and from `NAME=PATH` strings
(the CLI's `--target`), where NAME is a backend (`ort-int8=x.onnx`), `LABEL:BACKEND`
(`qat:ort-int8=x.onnx`) or a plain label, the backend then read from the file.

A name that looks like a backend but is none (`ov-int9`) is refused rather than taken for a
label, two targets of one name are refused rather than one dropping the other, and an int8
backend must be given a quantized file (an fp32 ONNX on `ort-int8` would be timed as int8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qtoolkit.artifacts import ENGINE_FILE, EXPORT_FILE, fp32_path_for, identify, quantized_source
from qtoolkit.errors import QtoolError
from qtoolkit.runtime.backends import BACKENDS, BackendSpec, get_backend

if TYPE_CHECKING:
    from qtoolkit.recipe import Recipe

__all__ = [
    "BACKENDS",
    "BackendSpec",
    "BenchTarget",
    "check_target_file",
    "default_path",
    "parse_target",
    "resolve_targets",
    "unavailable_reason",
]


@dataclass(frozen=True)
class BenchTarget:
    name: str
    backend: BackendSpec
    path: Path | None  # None: the backend has no default file in this recipe
    explicit: bool = False  # given by the user (a missing file is an error, not a skip)


def default_path(backend: BackendSpec, recipe: Recipe) -> Path | None:
    """The file the recipe's stages write for `backend`, or None (trt-fp16: give a path)."""
    if backend.artifact == "float-checkpoint":
        from qtoolkit.artifacts import finetuned_source
        from qtoolkit.models import resolve_model_ref

        model_cfg, _ = finetuned_source(recipe)
        if model_cfg.path is None:
            return None
        try:
            return resolve_model_ref(model_cfg.path)
        except QtoolError:
            return Path(model_cfg.path)  # reported as missing, like any stage output
    if backend.artifact == "quantized-checkpoint":
        return quantized_source(recipe) or recipe.stage_dir("calibrated")
    if backend.artifact.startswith("onnx-"):
        onnx_path = recipe.stage_dir("export") / EXPORT_FILE
        if backend.precision == "int8":
            return onnx_path
        return fp32_path_for(onnx_path)
    if backend.name == "trt-int8":
        return recipe.stage_dir("engine") / ENGINE_FILE
    return None


def infer_backend(path: Path) -> BackendSpec:
    """The backend for a file: an engine, an ONNX model (int8 if it has Q/DQ or integer ops),
    OpenVINO IR, a quantized checkpoint (PyTorch fake-quant) or a float checkpoint."""
    if path.suffix in (".engine", ".plan"):  # may not be built yet: checked when it runs
        return BACKENDS["trt-int8"]
    what = identify(path)
    if what == "onnx":
        return BACKENDS["ort-int8" if _onnx_int8(path) else "ort-fp32"]
    if what == "openvino":  # an IR from build-engine --runtime openvino
        return BACKENDS["ov-int8" if 'type="FakeQuantize"' in path.read_text() else "ov-bf16"]
    if what == "quantized-checkpoint" or _qdqbert(path):
        return BACKENDS["torch-fakequant"]
    if path.is_dir():
        return BACKENDS["torch-fp32"]
    raise QtoolError(f"benchmark target not found: {path}")


def _looks_like_backend(name: str) -> bool:
    """`ov-int9`, `ort-int4`, `trt_int8`: a misspelt backend, not a label."""
    import difflib

    runtimes = {b.split("-")[0] for b in BACKENDS}
    first = name.replace("_", "-").split("-")[0].lower()
    return first in runtimes or bool(difflib.get_close_matches(name, BACKENDS, cutoff=0.75))


# Ops that only a quantized ONNX holds (static Q/DQ, ORT's dynamic and QOperator formats).
_INT8_OPS = frozenset(
    ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
     "ConvInteger", "QLinearMatMul", "QLinearConv")
)  # fmt: skip


def _onnx_int8(path: Path) -> bool:
    """Whether an ONNX file is quantized (its graph only: external weights are not read)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise QtoolError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    return any(n.op_type in _INT8_OPS for n in graph.node)


def _quantized_file(path: Path) -> bool | None:
    """Whether `path` holds a quantized model (None: cannot tell, e.g. an engine)."""
    what = identify(path)
    if what == "onnx":
        return _onnx_int8(path)
    if what == "openvino":
        return 'type="FakeQuantize"' in path.read_text(errors="replace")
    if path.is_dir():
        return what == "quantized-checkpoint" or _qdqbert(path)
    return None


def _qdqbert(path: Path) -> bool:
    """A QDQBERT checkpoint (Hugging Face's QAT format): quantized, run with its own amax."""
    from qtoolkit.models.qdqbert import is_qdqbert_checkpoint

    return path.is_dir() and is_qdqbert_checkpoint(path)


def check_target_file(target: BenchTarget) -> None:
    """An int8 backend must be given a quantized file; refused before anything is timed."""
    path = target.path
    if target.backend.precision != "int8" or path is None or not path.exists():
        return
    if _quantized_file(path) is False:
        raise QtoolError(
            f"benchmark target {target.name}: {path} is not quantized (no Q/DQ nodes or "
            f"amax), so {target.backend.name} would time a float model as int8; give the "
            "quantized export, or a float backend (e.g. ort-fp32)"
        )


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
        target = BenchTarget(label, get_backend(backend), path, explicit=True)
    elif name not in BACKENDS and _looks_like_backend(name):
        raise QtoolError(
            f"unknown backend '{name}' in --target {name}={path} (known: {', '.join(BACKENDS)}); "
            "a label of your own must not look like a backend: use LABEL:BACKEND"
        )
    else:
        target = BenchTarget(name, BACKENDS.get(name) or infer_backend(path), path, explicit=True)
    check_target_file(target)
    return target


def resolve_targets(recipe: Recipe, extra: Sequence[str | BenchTarget] = ()) -> list[BenchTarget]:
    """`bench.backends` on their default files, then `bench.targets`, then `extra` (NAME=PATH
    strings or targets); a later target with an existing name replaces it in place."""
    targets: dict[str, BenchTarget] = {}
    for name in recipe.bench.backends:
        spec = get_backend(name)
        targets[name] = BenchTarget(name, spec, default_path(spec, recipe))
    given = [parse_target(k, v) for k, v in recipe.bench.targets.items()]
    given += [t if isinstance(t, BenchTarget) else parse_target(t) for t in extra]
    seen: dict[str, BenchTarget] = {}
    for target in given:  # an explicit target may replace a backend's default file, not another
        if target.name in seen:
            raise QtoolError(
                f"benchmark target name '{target.name}' is given twice ({seen[target.name].path} "
                f"and {target.path}); give each target its own name (LABEL:BACKEND=PATH)"
            )
        seen[target.name] = targets[target.name] = target
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
    elif spec.runtime == "openvino":
        from qtoolkit.runtime.ov_runner import openvino_missing

        reason = openvino_missing()
        if reason:
            return reason
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
