"""Open whatever a user points at (fp32 checkpoint, quantized checkpoint, ONNX export) as a
runner, with the tokenizer, config and task it needs. `qtool evaluate` and `qtool benchmark`
both open models here, so they measure the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["Target", "open_target", "task_from_config"]


@dataclass
class Target:
    runner: Any
    tokenizer: Any
    task_name: str
    config: Any  # Hugging Face config (labels)
    kind: str  # torch-fp32 | torch-fakequant | onnxruntime


def task_from_config(config) -> str | None:
    """The task of a Hugging Face config's head class, e.g. BertForQuestionAnswering."""
    from qtoolkit.models.registry import HEAD_SUFFIX

    for arch in getattr(config, "architectures", None) or []:
        for task, suffix in HEAD_SUFFIX.items():
            if arch.endswith(suffix):
                return task
    return None


def _open_onnx(path: Path, recipe, threads) -> Target:
    from transformers import AutoConfig, AutoTokenizer

    from qtoolkit.artifacts import try_read_manifest
    from qtoolkit.runtime.ort_runner import OrtRunner

    folder = path.parent
    if not (folder / "config.json").is_file():
        raise QtoolError(f"{folder} has no config.json next to the ONNX model (export writes one)")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    manifest = try_read_manifest(folder) or {}
    task_name = manifest.get("task") or task_from_config(config) or recipe.model.task
    runner = OrtRunner(path, threads=threads)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return Target(runner, tokenizer, task_name, config, "onnxruntime")


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


def open_target(target: str | Path, recipe, device: str = "cpu", threads=None) -> Target:
    """Load whatever `target` is, with a runner for it and the tokenizer and config it needs."""
    from qtoolkit.artifacts import identify
    from qtoolkit.models.loading import quiet_transformers

    quiet_transformers()
    path = Path(target)
    what = identify(path)
    if what == "onnx-export-folder":
        from qtoolkit.artifacts import EXPORT_FILE

        path, what = path / EXPORT_FILE, "onnx"
    if what in ("dataset", "bench"):
        raise QtoolError(f"{path} is a qtoolkit {what} folder, not a model")
    if what == "onnx":
        return _open_onnx(path, recipe, threads)
    if what == "engine":
        raise QtoolError(
            "evaluating TensorRT engines needs a GPU and TensorRT (use the Docker image)"
        )
    from qtoolkit.models.qdqbert import is_qdqbert_checkpoint

    if what == "quantized-checkpoint" or (path.is_dir() and is_qdqbert_checkpoint(path)):
        # A QDQBERT folder runs with its own amax.
        from qtoolkit.quant import load_quantized
        from qtoolkit.runtime.torch_runner import TorchRunner
        from qtoolkit.tasks import get_task

        ckpt = load_quantized(path, device=device)
        task_name = ckpt.manifest["task"]
        runner = TorchRunner(ckpt.model, get_task(task_name).output_names, device)
        return Target(runner, ckpt.tokenizer, task_name, ckpt.model.config, "torch-fakequant")
    if not path.is_dir():
        raise QtoolError(f"evaluation target not found: {path}")
    return _open_float(path, recipe, device)
