"""Evaluate a task on any target: fp32 checkpoint, quantized checkpoint, ONNX file (ORT)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["EvalOutcome", "evaluate_runner", "open_target", "run_evaluate", "agreement"]


@dataclass
class EvalOutcome:
    target: str
    backend: str
    task: str
    num_examples: int
    metrics: dict[str, float]
    seconds: float
    predictions: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "backend": self.backend,
            "task": self.task,
            "num_examples": self.num_examples,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
            **self.extra,
            "predictions": self.predictions,
        }


def evaluate_runner(runner, task, data, batch_size: int, description: str = "evaluating"):
    """(metrics, predictions) of `runner` on tokenized `data`."""
    from qtoolkit.tasks import split_rows
    from qtoolkit.ui import track

    # Data may shrink each batch's outputs to what its metrics need (masked LM: vocab logits).
    reduce = getattr(data, "reduce_outputs", None)
    total = getattr(data, "num_eval_batches", data.num_batches)(batch_size)
    outputs = []
    for i, batch in enumerate(track(data.batches(batch_size), description, total=total)):
        out = runner(batch)
        outputs.append(reduce(out, i, batch_size) if reduce else out)
    return task.evaluate(data, split_rows(outputs, data.lengths))


@dataclass
class Target:
    runner: Any
    tokenizer: Any
    task_name: str
    config: Any  # Hugging Face config (labels)
    kind: str


def _task_from_config(config) -> str | None:
    from qtoolkit.models.registry import HEAD_SUFFIX

    for arch in getattr(config, "architectures", None) or []:
        for task, suffix in HEAD_SUFFIX.items():
            if arch.endswith(suffix):
                return task
    return None


def open_target(target: str | Path, recipe: Recipe, device: str = "cpu", threads=None) -> Target:
    """Load whatever `target` is, with a runner for it and the tokenizer and config it needs."""
    from transformers import AutoConfig, AutoTokenizer

    from qtoolkit.models import load_model
    from qtoolkit.models.loading import quiet_transformers
    from qtoolkit.runtime import OrtRunner, TorchRunner
    from qtoolkit.tasks import get_task

    quiet_transformers()
    path = Path(target)
    if path.suffix == ".onnx":
        folder = path.parent
        if not (folder / "config.json").is_file():
            raise QtoolError(
                f"{folder} has no config.json next to the ONNX model (export writes one)"
            )
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        task_name = _read_task(folder) or _task_from_config(config) or recipe.model.task
        runner = OrtRunner(path, threads=threads)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return Target(runner, tokenizer, task_name, config, "onnxruntime")
    if path.suffix in (".engine", ".plan"):
        raise QtoolError(
            "evaluating TensorRT engines needs a GPU and TensorRT (use the Docker image)"
        )
    if not path.is_dir():
        raise QtoolError(f"evaluation target not found: {path}")
    from qtoolkit.models.qdqbert import is_qdqbert_checkpoint

    marker = (path / "qtoolkit.json").is_file()
    quantized_dir = marker and _read_format(path) == "qtoolkit-quantized"
    if quantized_dir or is_qdqbert_checkpoint(path):  # a QDQBERT folder runs with its amax
        from qtoolkit.quant import load_quantized

        ckpt = load_quantized(path, device=device)
        task_name = ckpt.manifest["task"]
        runner = TorchRunner(ckpt.model, get_task(task_name).output_names, device)
        return Target(runner, ckpt.tokenizer, task_name, ckpt.model.config, "torch-fakequant")
    config = (
        AutoConfig.from_pretrained(path, local_files_only=True)
        if (path / "config.json").is_file()
        else None
    )
    task_name = (config and _task_from_config(config)) or recipe.model.task
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


def _read_format(folder: Path) -> str | None:
    return json.loads((folder / "qtoolkit.json").read_text()).get("format")


def _read_task(folder: Path) -> str | None:
    marker = folder / "qtoolkit.json"
    return json.loads(marker.read_text()).get("task") if marker.is_file() else None


def label_map_for(task, examples, config) -> dict:
    """The label ids the model was trained with: integers map to themselves, names through the
    model config's label2id."""
    data_map = task.label_map(examples)
    if not data_map or all(k == v for k, v in data_map.items()):
        return data_map
    model_map = dict(getattr(config, "label2id", {}) or {})
    missing = [k for k in data_map if k not in model_map]
    if missing:
        raise QtoolError(
            f"labels {missing[:3]} are not among the model's labels {list(model_map)[:5]}"
        )
    return model_map


def run_evaluate(
    target: str | Path,
    recipe: Recipe,
    data_file: str | Path | None = None,
    limit: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> EvalOutcome:
    from qtoolkit.tasks import get_task

    data_file = data_file or recipe.data.test_file
    if data_file is None:
        raise QtoolError("no evaluation data: set data.test_file or pass --data")
    tgt = open_target(target, recipe, device, threads)
    task = get_task(tgt.task_name, **_task_options(tgt.task_name, recipe))
    examples = task.read(data_file, recipe.data, limit)
    data = task.encode(
        tgt.tokenizer, examples, recipe.data.max_length, label_map_for(task, examples, tgt.config)
    )
    start = time.perf_counter()
    metrics, predictions = evaluate_runner(tgt.runner, task, data, recipe.data.eval_batch_size)
    return EvalOutcome(
        target=str(target),
        backend=tgt.kind,
        task=tgt.task_name,
        num_examples=len(examples),
        metrics=metrics,
        seconds=time.perf_counter() - start,
        predictions=predictions,
        extra={"data": str(data_file)},
    )


def _task_options(task_name: str, recipe: Recipe) -> dict[str, Any]:
    return {"doc_stride": recipe.data.doc_stride} if task_name == "question-answering" else {}


def agreement(a: Any, b: Any) -> float:
    """Share of identical predictions (labels, answer strings or tag sequences)."""
    if isinstance(a, dict):
        keys = list(a)
        a, b = [a[k] for k in keys], [b.get(k) for k in keys]
    if len(a) != len(b):
        raise QtoolError(f"cannot compare {len(a)} predictions with {len(b)}")
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)
