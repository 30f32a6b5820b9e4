"""Open whatever a user points at as a runner, with the tokenizer, config and task it needs.

This is the one place that maps a path to a runtime:

| path | runtimes (first: the default) |
|---|---|
| fp32 / quantized checkpoint folder | torch |
| ONNX file or export folder | onnxruntime, openvino |
| OpenVINO IR (.xml) or `build-engine --runtime openvino` folder | openvino |
| TensorRT engine (.engine / .plan) | tensorrt |

`qtool evaluate`, `qtool benchmark` and `build-engine --runtime openvino` all open models here,
so they measure the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["RUNTIMES", "RuntimeOptions", "Target", "open_target", "task_from_config"]

RUNTIMES = ("torch", "onnxruntime", "openvino", "tensorrt")
_ALLOWED = {
    "quantized-checkpoint": ("torch",),
    "float-checkpoint": ("torch",),
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
    "engine": ("tensorrt",),
}


@dataclass
class Target:
    runner: Any  # a qtoolkit.runtime.runner.Runner
    tokenizer: Any
    task_name: str
    config: Any  # Hugging Face config (labels)
    kind: str  # torch-fp32 | torch-fakequant | onnxruntime | openvino | tensorrt


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime is set up: threads, ORT providers, OpenVINO precision and hint."""

    threads: int | None = None
    providers: list[Any] | None = None  # ONNX Runtime; None: CPU
    precision: str | None = None  # what the caller knows the file is (fp32 / int8)
    inference_precision: str | None = None  # OpenVINO: forced (f32), None: its default
    hint: str = "latency"  # OpenVINO PERFORMANCE_HINT
    extra: dict[str, Any] = field(default_factory=dict)


def task_from_config(config) -> str | None:
    """The task of a Hugging Face config's head class, e.g. BertForQuestionAnswering."""
    from qtoolkit.models.registry import HEAD_SUFFIX

    for arch in getattr(config, "architectures", None) or []:
        for task, suffix in HEAD_SUFFIX.items():
            if arch.endswith(suffix):
                return task
    return None


def _folder_parts(folder: Path, recipe) -> tuple[Any, Any, str]:
    """(tokenizer, config, task) saved next to an exported model."""
    from transformers import AutoConfig

    from qtoolkit.artifacts import try_read_manifest
    from qtoolkit.models.loading import load_tokenizer

    if not (folder / "config.json").is_file():
        raise QtoolError(f"{folder} has no config.json next to the model (export writes one)")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    manifest = try_read_manifest(folder) or {}
    task_name = manifest.get("task") or task_from_config(config) or recipe.model.task
    tokenizer = load_tokenizer(folder, " next to the exported model (export writes one)")
    return tokenizer, config, task_name


def _open_file(path: Path, runtime: str, recipe, opts: RuntimeOptions) -> Target:
    """An ONNX file or OpenVINO IR; the tokenizer and config from its folder."""
    if runtime == "openvino":
        from qtoolkit.runtime.ov_runner import OpenVinoRunner

        runner: Any = OpenVinoRunner(path, opts.threads, opts.inference_precision, opts.hint)
    else:
        from qtoolkit.runtime.ort_runner import OrtRunner

        runner = OrtRunner(path, opts.threads, opts.providers, opts.precision)
    tokenizer, config, task_name = _folder_parts(path.parent, recipe)
    return Target(runner, tokenizer, task_name, config, runtime)


def _open_engine(path: Path, recipe) -> Target:
    from qtoolkit.artifacts import EXPORT_FILE
    from qtoolkit.engine.report import build_report_path
    from qtoolkit.runtime.trt_runner import TrtRunner

    # The engine holds no tokenizer or label names: take them from the ONNX it was built from.
    report = build_report_path(path)
    onnx_path = Path(json.loads(report.read_text())["onnx"]) if report.is_file() else None
    if onnx_path is None or not onnx_path.is_file():
        onnx_path = recipe.stage_dir("export") / EXPORT_FILE
    if not onnx_path.is_file():
        raise QtoolError(
            f"{path}: cannot find the ONNX model it was built from ({onnx_path}), "
            "which holds the tokenizer and config"
        )
    tokenizer, config, task_name = _folder_parts(onnx_path.parent, recipe)
    return Target(TrtRunner(path), tokenizer, task_name, config, "tensorrt")


def _open_float(path: Path, recipe, device: str) -> Target:
    from transformers import AutoConfig

    from qtoolkit.models import load_model
    from qtoolkit.runtime.torch_runner import TorchRunner
    from qtoolkit.tasks import get_task

    config = (
        AutoConfig.from_pretrained(path, local_files_only=True)
        if (path / "config.json").is_file()
        else None
    )
    task_name = (config and task_from_config(config)) or recipe.model.task
    model_cfg = recipe.model.model_copy(
        update={"path": str(path), "task": task_name, "random_init": False}
    )
    if config is not None and task_name in ("sequence-classification", "token-classification"):
        model_cfg = model_cfg.model_copy(update={"num_labels": config.num_labels})
    loaded = load_model(model_cfg, seed=recipe.seed)
    if loaded.newly_initialized:
        raise QtoolError(
            f"{path} has no trained {task_name} head; fine-tune it first (qtool finetune)"
        )
    runner = TorchRunner(loaded.model, get_task(task_name).output_names, device)
    return Target(runner, loaded.tokenizer, task_name, loaded.model.config, "torch-fp32")


def _open_quantized(path: Path, device: str) -> Target:
    from qtoolkit.quant import load_quantized
    from qtoolkit.runtime.torch_runner import TorchRunner
    from qtoolkit.tasks import get_task

    ckpt = load_quantized(path, device=device)
    task_name = ckpt.manifest["task"]
    runner = TorchRunner(ckpt.model, get_task(task_name).output_names, device)
    return Target(runner, ckpt.tokenizer, task_name, ckpt.model.config, "torch-fakequant")


def _resolve(path: Path) -> tuple[Path, str]:
    """(the file or folder to open, what it is); export folders open their model file."""
    from qtoolkit.artifacts import EXPORT_FILE, OPENVINO_FILE, identify

    what = identify(path)
    if what == "onnx-export-folder":
        return path / EXPORT_FILE, "onnx"
    if what == "openvino-folder":
        return path / OPENVINO_FILE, "openvino"
    if what in ("dataset", "bench"):
        raise QtoolError(f"{path} is a qtoolkit {what} folder, not a model")
    if what == "missing":
        raise QtoolError(f"model not found: {path}")
    if what == "other" and not path.is_dir():
        raise QtoolError(f"{path}: not a model (checkpoint folder, .onnx, .xml or .engine)")
    return path, "float-checkpoint" if what == "other" else what


def open_target(
    target: str | Path,
    recipe,
    device: str = "cpu",
    threads: int | None = None,
    runtime: str | None = None,
    options: RuntimeOptions | None = None,
) -> Target:
    """Load `target` on `runtime` (default: the first one its kind runs on), with a runner for
    it and the tokenizer and config it needs. `options` overrides `threads`."""
    from qtoolkit.models.loading import quiet_transformers

    quiet_transformers()
    opts = options or RuntimeOptions(threads=threads)
    path, what = _resolve(Path(target))
    allowed = _ALLOWED[what]
    runtime = runtime or allowed[0]
    if runtime not in RUNTIMES:
        raise QtoolError(f"unknown runtime '{runtime}' (known: {', '.join(RUNTIMES)})")
    if runtime not in allowed:
        hint = "; export it first (qtool export-onnx)" if "torch" in allowed else ""
        raise QtoolError(
            f"{path} is a {what.replace('-', ' ')}, which runs on {' or '.join(allowed)}, "
            f"not {runtime}{hint}"
        )
    if what in ("onnx", "openvino"):
        return _open_file(path, runtime, recipe, opts)
    if what == "engine":
        return _open_engine(path, recipe)
    from qtoolkit.models.qdqbert import is_qdqbert_checkpoint

    if what == "quantized-checkpoint" or (path.is_dir() and is_qdqbert_checkpoint(path)):
        return _open_quantized(path, device)  # a QDQBERT folder runs with its own amax
    return _open_float(path, recipe, device)
