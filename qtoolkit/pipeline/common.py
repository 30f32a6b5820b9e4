"""What every stage starts with: the device, the task of a recipe and an evaluator on a split."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import finetuned_source

__all__ = [
    "Evaluator",
    "batch_forward_loop",
    "quant_source",
    "resolve_device",
    "split_evaluator",
    "stage_task",
]

# The model the quantization stages start from (the fine-tuned one when it exists).
quant_source = finetuned_source


def resolve_device(name: str) -> str:
    import torch

    from qtoolkit.errors import QtoolError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise QtoolError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    return name


def batch_forward_loop(
    batches: Sequence[dict], device: str, description: str = "calibrating"
) -> Callable:
    """A forward loop over pre-tokenized batches, with a progress bar."""
    from qtoolkit.ui import track

    def loop(model) -> None:
        for batch in track(batches, description, total=len(batches)):
            model(**{k: v.to(device) for k, v in batch.items()})

    return loop


def load_trained_model(model_cfg, seed: int):
    """`load_model`, refusing a checkpoint whose task head would be freshly initialised (PTQ
    selection on a head that classifies nothing would measure noise)."""
    from qtoolkit.errors import QtoolError
    from qtoolkit.models import load_model

    loaded = load_model(model_cfg, seed=seed)
    if loaded.newly_initialized:
        raise QtoolError(
            f"{model_cfg.path} has no trained {model_cfg.task} head: run qtool finetune first"
        )
    return loaded


def stage_task(recipe, task_name: str | None = None):
    """The task object for `task_name` (default: the recipe's), with the recipe's options."""
    from qtoolkit.tasks import get_task
    from qtoolkit.tasks.evaluation import task_options

    name = task_name or recipe.model.task
    return get_task(name, **task_options(name, recipe.data))


@dataclass
class Evaluator:
    """One split, read and tokenized once, that scores any model or runner."""

    task: Any
    data: Any  # TaskData
    num_examples: int
    batch_size: int
    device: str = "cpu"

    def run(
        self, target, description: str = "eval", sink: list | None = None
    ) -> tuple[dict[str, float], Any, float]:
        """(metrics, predictions, seconds) of a model (run in PyTorch) or a runner; its batch
        outputs go to `sink` when one is given (see tasks.evaluation.output_drift)."""
        from torch import nn

        from qtoolkit.runtime import TorchRunner
        from qtoolkit.tasks.evaluation import evaluate_runner

        runner = target
        if isinstance(target, nn.Module):
            runner = TorchRunner(target, self.task.output_names, self.device)
        start = time.perf_counter()
        metrics, predictions = evaluate_runner(
            runner, self.task, self.data, self.batch_size, description, sink
        )
        return metrics, predictions, time.perf_counter() - start

    def metrics(self, model, description: str = "eval") -> dict[str, float]:
        return self.run(model, description)[0]


def split_evaluator(
    recipe,
    task,
    tokenizer,
    data_file: str | Path,
    config=None,
    *,
    limit: int | None = None,
    label2id: dict | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
) -> Evaluator:
    """Read `data_file` for `task`, map labels to the model's ids (`config`, unless `label2id`
    is given) and tokenize it with the model's tokenizer."""
    from qtoolkit.models.loading import check_max_length
    from qtoolkit.tasks.evaluation import check_known_labels, label_map_for

    if config is not None:
        check_max_length(recipe.data.max_length, config)
    examples = task.read(data_file, recipe.data, limit)
    if label2id is None:
        label2id = label_map_for(task, examples, config, data_file)
    else:
        check_known_labels(task, examples, label2id, data_file)
    data = task.encode(tokenizer, examples, recipe.data.max_length, label2id)
    return Evaluator(task, data, len(examples), batch_size or recipe.data.eval_batch_size, device)
