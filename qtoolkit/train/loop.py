"""One training loop for fine-tuning and QAT: AdamW, linear warm-up and decay, evaluation at
each epoch end, the best checkpoint kept, progress with the running loss."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from qtoolkit.tasks.base import TaskData

__all__ = ["TrainOutcome", "TrainSettings", "train"]


@dataclass
class TrainSettings:
    epochs: float
    learning_rate: float
    batch_size: int
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_steps: int | None = None
    seed: int = 42
    device: str = "cpu"


@dataclass
class TrainOutcome:
    best_metric: float = -math.inf
    best_epoch: int = -1
    steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def _default_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def train(
    model: torch.nn.Module,
    data: TaskData,
    settings: TrainSettings,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    primary_metric: str,
    save_best: Callable[[torch.nn.Module, dict[str, Any]], None],
    loss_fn: LossFn = _default_loss,
) -> TrainOutcome:
    """Train `model` on `data`; `evaluate(model)` runs after each epoch (the last one may be
    partial), and `save_best(model, record)` is called whenever `primary_metric` improves."""
    from transformers import get_linear_schedule_with_warmup

    from qtoolkit.ui import progress_bar

    torch.manual_seed(settings.seed)
    steps_per_epoch = data.num_batches(settings.batch_size)
    total = math.ceil(settings.epochs * steps_per_epoch)
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight")
    groups = [
        {"params": [], "weight_decay": settings.weight_decay},
        {"params": [], "weight_decay": 0.0},
    ]
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[any(n in name for n in no_decay)]["params"].append(p)
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * total), total
    )
    outcome = TrainOutcome()
    start = time.perf_counter()
    step, epoch = 0, 0
    with progress_bar("training", total) as advance:
        while step < total:
            model.train()
            running = 0.0
            for i, batch in enumerate(
                data.batches(
                    settings.batch_size, with_labels=True, shuffle_seed=settings.seed + epoch
                )
            ):
                batch = {k: v.to(settings.device) for k, v in batch.items()}
                loss = loss_fn(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                running = loss.item() if i == 0 else 0.9 * running + 0.1 * loss.item()
                advance(f"epoch {epoch + 1} loss {running:.4f}")
                if step >= total:
                    break
            model.eval()
            metrics = evaluate(model)
            record = {
                "epoch": epoch + 1,
                "step": step,
                "loss": running,
                "seconds": time.perf_counter() - start,
                **metrics,
            }
            outcome.history.append(record)
            if metrics[primary_metric] > outcome.best_metric:
                outcome.best_metric, outcome.best_epoch = metrics[primary_metric], epoch + 1
                save_best(model, record)
            epoch += 1
    outcome.steps = step
    outcome.seconds = time.perf_counter() - start
    return outcome
