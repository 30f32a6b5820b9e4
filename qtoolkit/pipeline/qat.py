"""The QAT stage: quantized checkpoint + training text -> a quantization-aware fine-tuned
checkpoint, in the same format as a calibrated one (`load_quantized` reads both).

It starts from `qat.start_from` (e.g. `qtool quantize`'s checkpoint), else the recipe's
calibrated checkpoint, calibrating first when there is none (qat_start.py); trains with fake
quantization on (straight-through gradients), by default distilling from the fp32 model with
the labels unused, optionally learning activation amax; evaluates on `data.eval_file` several
times per epoch, the start included, and keeps the evaluation with the best agreement with fp32
(qat_eval.py), or the best task metric (`qat.select: metric`).

Training state is written to `<qat output>.state/` (a sibling of the output, which is replaced
whole each time the best checkpoint is saved) every `qat.save_every_steps` steps and at each
epoch end. `run_qat` resumes from it automatically unless `qat.resume` is false, and removes it
once the run has finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import Interrupted, QtoolError
from qtoolkit.pipeline.qat_eval import eval_line
from qtoolkit.recipe import Recipe

__all__ = ["QatOutcome", "run_qat", "qat_state_dir"]


@dataclass
class QatOutcome:
    output_dir: Path
    primary_metric: str
    start_metrics: dict[str, float]  # the start (PTQ) model on data.eval_file
    best_metric: float
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict[str, Any]]
    calibrated_dir: Path  # the checkpoint QAT started from
    calibrated_now: bool  # no calibrated checkpoint existed; run_qat made one first
    resumed_step: int  # 0: a fresh start
    learned_amax: int  # quantizers whose amax was trained
    distilled: bool
    best_step: int = -1  # 0: no step beat the start, which is what was saved
    select: str = "metric"
    notices: list[str] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any]:
        """The evaluation record of the saved checkpoint."""
        return next((r for r in self.history if r["step"] == self.best_step), {})

    def summary(self) -> str:
        """What `qtool qat` prints: one line per evaluation (the start first), then the kept
        step against the start."""
        metric = self.primary_metric
        lines = [f"resumed at step {self.resumed_step}"] if self.resumed_step else []
        best, start = self.best, self.start_metrics
        if start and not any(r["step"] == 0 for r in self.history):
            lines.append(f"start (PTQ): {metric} {start[metric]:.4f}")
        lines += [eval_line(rec, metric) for rec in self.history]
        chosen = "agreement with fp32" if self.select == "agreement" else metric
        if self.best_step == 0:
            kept = "no step beat the start: kept the start checkpoint"
        else:
            kept = f"best {chosen} at step {self.best_step} (epoch {self.best_epoch})"
        figures = []
        if "agreement" in best and "agreement" in start:
            figures.append(
                f"agreement {100 * best['agreement']:.2f}% (start {100 * start['agreement']:.2f}%)"
            )
        if metric in best and metric in start:
            figures.append(f"{metric} {best[metric]:.4f} (start {start[metric]:.4f})")
        extras = (", distilled" if self.distilled else "") + (
            f", {self.learned_amax} amax learned" if self.learned_amax else ""
        )
        lines.append(
            f"{kept}: {', '.join(figures)}; {self.steps} steps in {self.seconds:.0f}s{extras}; "
            f"wrote {self.output_dir}"
        )
        return "\n".join(lines)


def qat_state_dir(out_dir: Path) -> Path:
    """Where a QAT run's resumable state lives: `<out_dir>.state`, next to the output."""
    return out_dir.with_name(f"{out_dir.name}.state")


def _teacher_dtype(precision: str, device: str):
    import torch

    if precision == "fp32" or (precision == "auto" and device != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _resume_hint(state_dir: Path, every: int | None) -> str:
    """What to do after Ctrl-C: resume from the saved state, or start again."""
    from qtoolkit.train.state import STATE_FILE

    if (state_dir / STATE_FILE).is_file():
        return (
            f"the training state in {state_dir} is kept; run the same qtool qat command again "
            "to resume from it (--restart starts over)"
        )
    when = f"every {every} steps and " if every else ""
    return f"no training state was saved yet ({when}at each epoch end); run the command again"


def _unfinished(state_dir: Path, calibrated: Path) -> str:
    """What the manifest of a QAT output says until the run has finished."""
    return (
        "QAT has not finished (it was interrupted, or is still running); run the same qtool qat "
        f"command again to resume from {state_dir}, or use the calibrated checkpoint {calibrated}"
    )


def run_qat(recipe: Recipe) -> QatOutcome:
    """Quantization-aware training per `recipe.qat`, from `qat.start_from` or the recipe's
    calibrated checkpoint (made first if missing); the best evaluation on `data.eval_file` (by
    agreement with fp32, or by the task metric: `qat.select`) is saved to stage_dir("qat").
    Resumes from `<qat output>.state/` when it holds a state of the same run (unless
    `qat.resume` is false); a state of a run with other settings is refused."""
    from qtoolkit import dist
    from qtoolkit.artifacts import INCOMPLETE, Kind, check_output_dir, kind_of, mark_complete
    from qtoolkit.models.loading import check_max_length
    from qtoolkit.pipeline.common import resolve_device, split_evaluator, stage_task
    from qtoolkit.pipeline.qat_start import (
        check_hidden_mse,
        load_teacher,
        resolve_start,
        start_checkpoint,
        teacher_source,
        train_data,
    )
    from qtoolkit.quant import save_quantized
    from qtoolkit.recipe import QuantConfig
    from qtoolkit.train.distill import DistillSettings, make_qat_loss
    from qtoolkit.train.learned_amax import amax_param_groups, learnable_amax, plain_amax
    from qtoolkit.train.loop import TrainSettings, train
    from qtoolkit.train.state import Checkpointing, clear_train_state

    cfg, data_cfg = recipe.qat, recipe.data
    if data_cfg.train_file is None or data_cfg.eval_file is None:
        raise QtoolError("QAT needs data.train_file and data.eval_file")
    device = resolve_device(cfg.device)
    dist.init(device)  # under torchrun: data-parallel; rank 0 evaluates and writes
    start_manifest = None
    if cfg.start_from is not None:
        from qtoolkit.artifacts import read_manifest

        start_manifest = read_manifest(resolve_start(cfg.start_from), Kind.QUANTIZED)
    source = teacher_source(recipe, start_manifest)
    notices: list[str] = []
    out_dir = recipe.stage_dir("qat")
    # Before any work: the output must be replaceable and hold none of the inputs.
    inputs = (
        cfg.start_from or recipe.stage_dir("calibrated"),
        source.path,
        source.tokenizer,
        data_cfg.train_file,
        data_cfg.eval_file,
        data_cfg.calib_file,
    )
    check_output_dir(out_dir, Kind.QUANTIZED, inputs)
    # The teacher first: a missing one fails before a possibly long calibration.
    needs_teacher = cfg.distill or cfg.select == "agreement"
    teacher = load_teacher(source, recipe, device) if needs_teacher else None
    calibrated, calibrated_now, ckpt = start_checkpoint(recipe, source, device, notices)
    model = ckpt.model
    quant_cfg = QuantConfig.model_validate(ckpt.manifest["quant"])
    if cfg.distill:
        check_hidden_mse(ckpt.manifest["quant"], cfg.hidden_mse_weight)
    task = stage_task(recipe)
    check_max_length(data_cfg.max_length, model.config)
    labelled = not cfg.distill or cfg.label_weight > 0
    train_set, num_train, label2id = train_data(
        recipe, task, ckpt.tokenizer, model.config, labelled
    )
    evaluator = split_evaluator(
        recipe,
        task,
        ckpt.tokenizer,
        data_cfg.eval_file,
        model.config,
        label2id=label2id,
        device=device,
    )
    evaluate = evaluator.metrics
    rank = None
    if cfg.select == "agreement":
        from qtoolkit.pipeline.qat_eval import FidelityEvaluator, rank_by

        # Only rank 0 evaluates; the fp32 reference on the eval split is computed once.
        evaluate = FidelityEvaluator.against(evaluator, teacher) if dist.is_main() else None
        rank = rank_by(cfg.select, task.primary_metric)
    distill = DistillSettings(cfg.temperature, cfg.label_weight, cfg.hidden_mse_weight)
    if not cfg.distill:
        teacher = None  # it only gave the reference predictions
    loss_fn = make_qat_loss(teacher, distill, _teacher_dtype(cfg.teacher_precision, device))

    state_dir = qat_state_dir(out_dir)
    if not cfg.resume and dist.is_main():
        clear_train_state(state_dir)

    run_info = {
        "stage": "qat",
        "source_model": ckpt.manifest.get("source_model"),
        "calibrated_from": str(calibrated),
        "calib": ckpt.manifest.get("calib"),
        "qat": cfg.model_dump(mode="json", exclude={"output_dir"}),
        "teacher": source.path if cfg.distill else None,
        "reference": source.path if cfg.select == "agreement" else None,
        "train_file": str(data_cfg.train_file),
        "num_train": num_train,
        "labels_used": labelled,
        "eval_file": str(data_cfg.eval_file),
        "max_length": data_cfg.max_length,
        "device": device,
    }
    # What a resumed run must share with the saved one (the loop adds lr, batch size, steps).
    fingerprint = {
        "qat": cfg.model_dump(
            mode="json",
            exclude={"output_dir", "resume", "save_every_steps", "device", "teacher_precision"},
        ),
        "calibrated": str(calibrated),
        "calibrated_created": ckpt.manifest.get("created"),
        **{k: run_info[k] for k in ("teacher", "reference", "train_file", "max_length")},
    }
    settings = TrainSettings.from_config(cfg, cfg.seed, device)
    model.to(device)
    # Selecting on agreement, the start competes (step 0): QAT never hands back a model less
    # faithful on the eval file than the one it started from. Selecting on the task metric, the
    # start is evaluated for the summary only.
    start_competes = cfg.select == "agreement"
    start_metrics = {} if start_competes else dist.main_only(evaluate, model)

    def evaluate_and_log(m) -> dict[str, float]:
        metrics = evaluate(m)
        _log_eval(metrics, task.primary_metric)
        return metrics

    with learnable_amax(model, enabled=cfg.learn_amax) as learned:

        def save_best(m, record: dict[str, Any]) -> None:
            with plain_amax(m):
                save_quantized(
                    m,
                    ckpt.tokenizer,
                    out_dir,
                    quant_cfg,
                    inputs=inputs,
                    # Refused as an input (export-onnx) until the run has finished.
                    info={
                        **run_info,
                        "learned_amax": len(learned),
                        "best": record,
                        INCOMPLETE: _unfinished(state_dir, calibrated),
                    },
                )

        groups = amax_param_groups(learned, cfg.amax_learning_rate)
        if cfg.freeze_amax_after is not None:
            total = _total_steps(settings, len(train_set))
            for group in groups:
                group["frozen_after"] = int(cfg.freeze_amax_after * total)
        try:
            outcome = train(
                model,
                train_set,
                settings,
                evaluate_and_log,
                task.primary_metric,
                save_best,
                loss_fn,
                param_groups=groups,
                checkpointing=Checkpointing(state_dir, cfg.save_every_steps, fingerprint),
                rank=rank,
                evaluate_start=start_competes,
            )
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(state_dir, cfg.save_every_steps)) from None
        except QtoolError as exc:  # a diverged loss: the best evaluation so far stays usable
            if dist.is_main() and kind_of(out_dir) is Kind.QUANTIZED:
                mark_complete(out_dir, stopped=str(exc))
            raise
    if start_competes and outcome.history:
        start_metrics = _metrics_of(outcome.history[0])
    if dist.is_main():  # rank 0 wrote the checkpoint and the state
        if outcome.best_step < 0 or kind_of(out_dir) is not Kind.QUANTIZED:
            raise QtoolError(f"QAT saved no checkpoint: {task.primary_metric} was never a number")
        mark_complete(out_dir, history=outcome.history, start_metrics=start_metrics)
        clear_train_state(state_dir)
    if outcome.best_step == 0:
        notices.append(
            "no QAT step did better on the eval file than the start: the output is the start "
            f"checkpoint ({calibrated}) as it was"
        )
    return QatOutcome(
        output_dir=out_dir,
        primary_metric=task.primary_metric,
        start_metrics=start_metrics,
        best_metric=outcome.best_metric,
        best_epoch=outcome.best_epoch,
        steps=outcome.steps,
        seconds=outcome.seconds,
        history=outcome.history,
        calibrated_dir=calibrated,
        calibrated_now=calibrated_now,
        resumed_step=outcome.resumed_step,
        learned_amax=len(learned),
        distilled=cfg.distill,
        best_step=outcome.best_step,
        select=cfg.select,
        notices=notices,
    )


_RECORD_KEYS = ("epoch", "step", "loss", "seconds")


def _metrics_of(record: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in _RECORD_KEYS}


def _log_eval(metrics: dict[str, float], primary_metric: str) -> None:
    """One line per evaluation while training runs (agreement with its interval)."""
    from qtoolkit.ui import labelled

    parts = []
    if "agreement" in metrics:
        parts.append(
            f"agreement with fp32 {100 * metrics['agreement']:.2f}% "
            f"[{100 * metrics['agreement_low']:.2f}, {100 * metrics['agreement_high']:.2f}], "
            f"kl {metrics['kl']:.4g}"
        )
    parts.append(f"{primary_metric} {metrics[primary_metric]:.4f}")
    labelled("eval", "cyan", ", ".join(parts))


def _total_steps(settings, num_examples: int) -> int:
    """The number of steps `train` takes (the same arithmetic)."""
    import math

    per_epoch = -(-num_examples // settings.batch_size)
    total = math.ceil(settings.epochs * per_epoch)
    return total if settings.max_steps is None else min(total, settings.max_steps)
