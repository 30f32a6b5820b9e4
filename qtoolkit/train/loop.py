"""One training loop for fine-tuning and QAT: AdamW, linear warm-up and decay, evaluation
`evals_per_epoch` times per epoch (the last at the epoch's end), the best checkpoint kept,
progress with the running loss and the last metric. With `evaluate_start`, the model as given
is evaluated first (step 0) and competes with every later evaluation: a run that never improves
on its start keeps the start.

With `checkpointing`, the loop writes a resumable state every N steps and at each epoch end and,
when one exists, continues from it: same batches in the same order, same optimizer and scheduler
state, same random numbers, so an interrupted and resumed run ends with the weights an
uninterrupted run would have.

Launched by torchrun, the loop runs data-parallel (DistributedDataParallel). `batch_size` is the
global batch: every rank builds the batch one process would and trains on its share of the
rows (`qtoolkit.dist.shard_rows`), so N ranks take the steps one process would. Rank 0 alone
evaluates (the others wait for its metrics), saves the best checkpoint and writes the resumable
state, which holds every rank's random numbers; a state resumes on any number of ranks with the
same global order.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from qtoolkit import dist
from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import TaskData
from qtoolkit.train.state import (
    STATE_FILE,
    Checkpointing,
    capture_rng,
    load_train_state,
    normalize_fingerprint,
    restore_rng,
    save_train_state,
)

__all__ = ["Checkpointing", "LossFn", "TrainOutcome", "TrainSettings", "train"]


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
    evals_per_epoch: int = 1
    dropout: bool = True  # False: the model trains in eval mode (dropout off)

    @classmethod
    def from_config(cls, cfg, seed: int, device: str) -> TrainSettings:
        """From a recipe section with the common fields (FinetuneConfig, QatConfig)."""
        return cls(
            evals_per_epoch=getattr(cfg, "evals_per_epoch", 1),
            dropout=getattr(cfg, "dropout", True),
            epochs=cfg.epochs,
            learning_rate=cfg.learning_rate,
            batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay,
            warmup_ratio=cfg.warmup_ratio,
            max_steps=cfg.max_steps,
            seed=seed,
            device=device,
        )


@dataclass
class TrainOutcome:
    best_metric: float = -math.inf
    best_epoch: int = -1  # 0: the start (evaluate_start) was never beaten
    best_step: int = -1
    best_key: tuple[float, ...] | None = None  # what `rank` gave the best evaluation
    steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_step: int = 0  # the step a saved state was resumed at (0: a fresh start)


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
RankFn = Callable[[dict[str, float]], tuple[float, ...]]

_NO_DECAY = ("bias", "LayerNorm.weight", "layernorm.weight")


def _default_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def _optimizer(
    model: torch.nn.Module, settings: TrainSettings, extra_groups: list[dict[str, Any]]
) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights without decay; `extra_groups` (each with its own lr
    or weight decay) take their parameters out of the default groups."""
    taken = {id(p) for g in extra_groups for p in g["params"]}
    groups = [
        {"params": [], "weight_decay": settings.weight_decay},
        {"params": [], "weight_decay": 0.0},
    ]
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in taken:
            groups[any(n in name for n in _NO_DECAY)]["params"].append(p)
    groups = [g for g in groups if g["params"]] + list(extra_groups)
    return torch.optim.AdamW(groups, lr=settings.learning_rate)


def _scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    """Linear warm-up to each group's lr and linear decay to 0 (transformers'
    get_linear_schedule_with_warmup); a group with `frozen_after` (a step) has lr 0 from there
    on, so AdamW leaves its parameters exactly as they are."""

    def linear(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    def group_lambda(frozen_after: int | None):
        if frozen_after is None:
            return linear
        return lambda step: linear(step) if step < frozen_after else 0.0

    lambdas = [group_lambda(g.get("frozen_after")) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def eval_positions(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    """Positions in an epoch (1-based batch counts) after which the loop evaluates: evenly
    spread, the last one the epoch's end."""
    n = max(1, min(evals_per_epoch, steps_per_epoch))
    return {math.ceil(k * steps_per_epoch / n) for k in range(1, n + 1)}


def _check_loss(
    loss: torch.Tensor, step: int, epoch: int, outcome: TrainOutcome, ckpt: Checkpointing | None
) -> None:
    """Stop at a NaN/inf loss, before it reaches the weights: what was saved stays good."""
    if bool(torch.isfinite(loss.detach()).all()):
        return
    kind = "nan" if bool(torch.isnan(loss.detach()).any()) else "inf"
    kept = (
        f"the best checkpoint so far (step {outcome.best_step}) is kept"
        if outcome.best_step >= 0
        else "no checkpoint was saved"
    )
    if ckpt is not None and (ckpt.state_dir / STATE_FILE).is_file():
        kept += f", and the last training state in {ckpt.state_dir}"
    raise QtoolError(
        f"training loss is {kind} at step {step} (epoch {epoch}); stopped before updating the "
        f"weights: {kept}. Lower the learning rate (or check the data)"
    )


def train(
    model: torch.nn.Module,
    data: TaskData,
    settings: TrainSettings,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    primary_metric: str,
    save_best: Callable[[torch.nn.Module, dict[str, Any]], None],
    loss_fn: LossFn = _default_loss,
    *,
    param_groups: list[dict[str, Any]] | None = None,
    checkpointing: Checkpointing | None = None,
    rank: RankFn | None = None,
    evaluate_start: bool = False,
) -> TrainOutcome:
    """Train `model` on `data`; `evaluate(model)` runs `settings.evals_per_epoch` times per
    epoch (the last one at the epoch's end, which may be partial), and `save_best(model, record)`
    is called whenever an evaluation ranks above every earlier one. In a distributed run both run
    on rank 0 only.

    `rank(metrics)`: the tuple evaluations are compared by, higher first (default:
    `(metrics[primary_metric],)`). `evaluate_start`: evaluate (and save) the model before the
    first step, as step 0. `param_groups`: optimizer groups with their own settings (e.g. learned
    amax, no decay; `frozen_after`: lr 0 from that step on). `checkpointing`: write a resumable
    state and resume from one found in its folder.
    """
    from qtoolkit.ui import notice, progress_bar

    rank_of = rank or (lambda metrics: (float(metrics[primary_metric]),))

    if len(data) == 0:
        raise QtoolError("no training examples")
    dist.init(settings.device)
    this_rank, world = dist.rank(), dist.world_size()
    torch.manual_seed(settings.seed + this_rank)  # rank 0 draws what a single process would
    steps_per_epoch = data.num_batches(settings.batch_size)
    total = math.ceil(settings.epochs * steps_per_epoch)
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    optimizer = _optimizer(model, settings, param_groups or [])
    scheduler = _scheduler(optimizer, int(settings.warmup_ratio * total), total)
    evaluate_at = eval_positions(steps_per_epoch, settings.evals_per_epoch)
    net = dist.wrap_model(model, settings.device)  # what the loss runs; `model` is saved
    fingerprint: dict[str, Any] = {}
    if checkpointing is not None:
        run = dataclasses.asdict(settings)
        run.pop("device")  # a run may continue on another device (or number of ranks)
        fingerprint = normalize_fingerprint(
            {**checkpointing.fingerprint, "train": run, "examples": len(data), "total": total}
        )
    outcome = TrainOutcome()
    step, epoch, position, running, elapsed = 0, 0, 0, 0.0, 0.0
    start = time.perf_counter()
    saved = None
    if checkpointing is not None:
        # Rank 0 reads (the state may live on its disk only) and hands it to every rank.
        saved = dist.main_only(load_train_state, checkpointing.state_dir, fingerprint)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, epoch, position = saved["step"], saved["epoch"], saved["position"]
        running, elapsed = saved["running_loss"], saved["seconds"]
        outcome.best_metric, outcome.best_epoch = saved["best_metric"], saved["best_epoch"]
        outcome.best_step = saved.get("best_step", -1)
        key = saved.get("best_key")
        outcome.best_key = None if key is None else tuple(key)
        outcome.history = list(saved["history"])
        outcome.resumed_step = step
        if not _restore_rank_rng(saved, this_rank, world, settings.seed + step):
            notice(
                f"resuming a {saved.get('world_size', 1)}-process state on {world}: the same "
                "batches in the same order; dropout draws differ from an uninterrupted run"
            )

    def save_state() -> None:
        rngs = dist.all_gather_object(capture_rng())  # every rank takes part
        if not dist.is_main():
            return
        save_train_state(
            checkpointing.state_dir,
            {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rngs[0],
                "rank_rng": rngs,
                "world_size": world,
                "epoch": epoch,
                "position": position,
                "step": step,
                "total": total,
                "running_loss": running,
                "seconds": elapsed + time.perf_counter() - start,
                "best_metric": outcome.best_metric,
                "best_epoch": outcome.best_epoch,
                "best_step": outcome.best_step,
                "best_key": None if outcome.best_key is None else list(outcome.best_key),
                "history": outcome.history,
            },
        )

    def status() -> str:
        text = f"epoch {epoch + 1} loss {running:.4f}"
        if outcome.history:
            text += f" {primary_metric} {outcome.history[-1][primary_metric]:.4f}"
        return text

    def evaluate_and_keep(epoch_number: int) -> None:
        """Evaluate now; record it; save the model when it ranks above every earlier one."""
        model.eval()
        metrics = dist.main_only(evaluate, model)
        record = {
            "epoch": epoch_number,
            "step": step,
            "loss": running if step > 0 else None,  # None: the start, no step taken yet
            "seconds": elapsed + time.perf_counter() - start,
            **metrics,
        }
        outcome.history.append(record)
        key = tuple(float(v) for v in rank_of(metrics))
        if all(math.isfinite(v) for v in key) and (
            outcome.best_key is None or key > outcome.best_key
        ):
            outcome.best_key = key
            outcome.best_metric = float(metrics[primary_metric])
            outcome.best_epoch, outcome.best_step = epoch_number, step
            if dist.is_main():
                save_best(model, record)

    if evaluate_start and saved is None:
        evaluate_and_keep(0)

    every = checkpointing.every_steps if checkpointing else None
    description = f"training (resumed at step {step})" if step else "training"
    with progress_bar(description, total - step) as advance, dist.peer_errors():
        # An epoch whose last step is done but whose evaluation is not (position > 0) still
        # needs its evaluation, even with every step taken.
        while step < total or position > 0:
            model.train(settings.dropout)
            batches = data.batches(
                settings.batch_size, with_labels=True, shuffle_seed=settings.seed + epoch
            )
            for batch in itertools.islice(batches, position, None):
                if step >= total:
                    break
                # Every rank builds the global batch one process would (order, padding, masks)
                # and trains on its rows of it.
                rows, factor, share = dist.shard_rows(next(iter(batch.values())).shape[0])
                batch = {k: v[rows].to(settings.device) for k, v in batch.items()}
                with dist.step_share(share):
                    loss = loss_fn(net, batch) * factor  # factor 1.0 in a single process
                    _check_loss(loss, step + 1, epoch + 1, outcome, checkpointing)
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                value = dist.all_reduce(loss.detach().clone()).item() / world  # global mean
                step += 1
                position += 1
                running = value if position == 1 else 0.9 * running + 0.1 * value
                advance(status())
                epoch_ends = step >= total or position >= steps_per_epoch
                if position in evaluate_at and not epoch_ends:
                    evaluate_and_keep(epoch + 1)
                    model.train(settings.dropout)
                if every and step % every == 0 and not epoch_ends:
                    save_state()
            evaluate_and_keep(epoch + 1)
            epoch += 1
            position = 0
            if checkpointing is not None:
                save_state()
        dist.barrier()  # what rank 0 wrote exists before any rank returns
    outcome.steps = step
    outcome.seconds = elapsed + time.perf_counter() - start
    return outcome


def _restore_rank_rng(saved: dict[str, Any], rank: int, world: int, fallback_seed: int) -> bool:
    """Each rank continues its own random stream; False when the state was written by another
    number of ranks (rank 0 continues its stream, the others start fresh ones)."""
    rngs = saved.get("rank_rng") or [saved["rng"]]
    if len(rngs) == world:
        restore_rng(rngs[rank])
        return True
    if rank == 0:
        restore_rng(rngs[0])
    else:
        torch.manual_seed(fallback_seed + 7919 * rank)
    return False
