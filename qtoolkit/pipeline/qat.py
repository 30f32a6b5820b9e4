"""The QAT stage: calibrated checkpoint + labelled data -> a quantization-aware fine-tuned
checkpoint, in the same format as a calibrated one (`load_quantized` reads both).

It starts from the recipe's calibrated checkpoint, or calibrates first (the calibrate stage, on
the recipe's quantization source) when there is none; trains with fake quantization on
(straight-through gradients), optionally learning activation amax and distilling from the fp32
model; evaluates on `data.eval_file` after each epoch and keeps the best checkpoint.

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
from qtoolkit.recipe import ModelConfig, Recipe

__all__ = ["QatOutcome", "run_qat", "qat_state_dir"]


@dataclass
class QatOutcome:
    output_dir: Path
    primary_metric: str
    start_metrics: dict[str, float]  # the calibrated (PTQ) model on data.eval_file
    best_metric: float
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict[str, Any]]
    calibrated_dir: Path
    calibrated_now: bool  # no calibrated checkpoint existed; run_qat made one first
    resumed_step: int  # 0: a fresh start
    learned_amax: int  # quantizers whose amax was trained
    distilled: bool
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What `qtool qat` prints: the PTQ start, one line per epoch, the best one and its gain."""
        metric = self.primary_metric
        lines = [f"resumed at step {self.resumed_step}"] if self.resumed_step else []
        start = self.start_metrics.get(metric)
        if start is not None:
            lines.append(f"calibrated (PTQ): {metric} {start:.4f}")
        lines += [
            f"epoch {rec['epoch']}: loss {rec['loss']:.4f}, {metric} {rec[metric]:.4f} "
            f"({rec['seconds']:.0f}s)"
            for rec in self.history
        ]
        gain = (
            ""
            if start is None
            else f" (PTQ {start:.4f}, {100 * (self.best_metric - start):+.2f} points)"
        )
        extras = (", distilled" if self.distilled else "") + (
            f", {self.learned_amax} amax learned" if self.learned_amax else ""
        )
        lines.append(
            f"best {metric} {self.best_metric:.4f} at epoch {self.best_epoch}{gain}, "
            f"{self.steps} steps in {self.seconds:.0f}s{extras}; wrote {self.output_dir}"
        )
        return "\n".join(lines)


def qat_state_dir(out_dir: Path) -> Path:
    """Where a QAT run's resumable state lives: `<out_dir>.state`, next to the output."""
    return out_dir.with_name(f"{out_dir.name}.state")


def _start_checkpoint(recipe: Recipe, source: ModelConfig, device: str, notices: list[str]):
    """The calibrated checkpoint, calibrating `source` first when there is none."""
    from qtoolkit.artifacts import Kind, kind_of
    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.quant import load_quantized

    calibrated = recipe.stage_dir("calibrated")
    calibrated_now = False
    if kind_of(calibrated) is not Kind.QUANTIZED:
        if recipe.data.calib_file is None:
            raise QtoolError(
                f"no calibrated checkpoint in {calibrated} and no data.calib_file to calibrate "
                "with (run qtool calibrate or qtool ptq-sweep first)"
            )
        result = run_calibrate(recipe.model_copy(update={"model": source}))
        notices.extend(result.notices)
        notices.append(f"calibrated {source.path} first ({recipe.calib.method}): {calibrated}")
        calibrated_now = True
    ckpt = load_quantized(calibrated, device=device)
    if ckpt.manifest["task"] != recipe.model.task:
        raise QtoolError(
            f"{calibrated} is a {ckpt.manifest['task']} model but the recipe's task is "
            f"{recipe.model.task}"
        )
    made_from = ckpt.manifest.get("source_model")
    if made_from and source.path and Path(made_from) != Path(source.path):
        notices.append(f"{calibrated} was calibrated from {made_from}, not from {source.path}")
    return calibrated, calibrated_now, ckpt


def _load_teacher(source: ModelConfig, recipe: Recipe, device: str):
    """The fp32 model quantization starts from, frozen, as the distillation teacher."""
    from qtoolkit.models import load_model

    loaded = load_model(source, seed=recipe.seed)
    if loaded.newly_initialized:
        raise QtoolError(
            f"distillation needs a fine-tuned fp32 teacher, but {source.path} has no trained "
            f"{source.task} head: run qtool finetune first"
        )
    teacher = loaded.model.to(device).eval()
    teacher.requires_grad_(False)
    return teacher


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
    """Quantization-aware training per `recipe.qat`, from the recipe's calibrated checkpoint
    (made first if missing); the best epoch on `data.eval_file` is saved to stage_dir("qat").
    Resumes from `<qat output>.state/` when it holds a state of the same run (unless
    `qat.resume` is false); a state of a run with other settings is refused."""
    from qtoolkit import dist
    from qtoolkit.artifacts import INCOMPLETE, Kind, check_output_dir, kind_of, mark_complete
    from qtoolkit.models.loading import check_max_length
    from qtoolkit.pipeline.common import quant_source, resolve_device, split_evaluator, stage_task
    from qtoolkit.quant import save_quantized
    from qtoolkit.recipe import QuantConfig
    from qtoolkit.tasks.evaluation import label_map_for
    from qtoolkit.train.distill import DistillSettings, make_qat_loss
    from qtoolkit.train.learned_amax import amax_param_groups, learnable_amax, plain_amax
    from qtoolkit.train.loop import TrainSettings, train
    from qtoolkit.train.state import Checkpointing, clear_train_state

    cfg, data_cfg = recipe.qat, recipe.data
    if data_cfg.train_file is None or data_cfg.eval_file is None:
        raise QtoolError("QAT needs data.train_file and data.eval_file")
    device = resolve_device(cfg.device)
    dist.init(device)  # under torchrun: data-parallel; rank 0 evaluates and writes
    source, notices = quant_source(recipe)
    out_dir = recipe.stage_dir("qat")
    # Before any work: the output must be replaceable and hold none of the inputs.
    inputs = (
        recipe.stage_dir("calibrated"),
        source.path,
        source.tokenizer,
        data_cfg.train_file,
        data_cfg.eval_file,
        data_cfg.calib_file,
    )
    check_output_dir(out_dir, Kind.QUANTIZED, inputs)
    # The teacher first: a missing one fails before a possibly long calibration.
    teacher = _load_teacher(source, recipe, device) if cfg.distill else None
    calibrated, calibrated_now, ckpt = _start_checkpoint(recipe, source, device, notices)
    model = ckpt.model
    quant_cfg = QuantConfig.model_validate(ckpt.manifest["quant"])
    task = stage_task(recipe)
    check_max_length(data_cfg.max_length, model.config)
    train_ex = task.read(data_cfg.train_file, data_cfg, cfg.train_limit)
    label2id = label_map_for(task, train_ex, model.config, data_cfg.train_file)
    train_data = task.encode(ckpt.tokenizer, train_ex, data_cfg.max_length, label2id)
    evaluator = split_evaluator(
        recipe, task, ckpt.tokenizer, data_cfg.eval_file, label2id=label2id, device=device
    )
    distill = DistillSettings(cfg.temperature, cfg.distill_weight, cfg.hidden_mse_weight)
    loss_fn = make_qat_loss(teacher, distill, _teacher_dtype(cfg.teacher_precision, device))

    state_dir = qat_state_dir(out_dir)
    if not cfg.resume and dist.is_main():
        clear_train_state(state_dir)

    evaluate = evaluator.metrics
    start_metrics = dist.main_only(evaluate, model)
    run_info = {
        "stage": "qat",
        "source_model": ckpt.manifest.get("source_model"),
        "calibrated_from": str(calibrated),
        "calib": ckpt.manifest.get("calib"),
        "qat": cfg.model_dump(mode="json", exclude={"output_dir"}),
        "teacher": source.path if cfg.distill else None,
        "train_file": str(data_cfg.train_file),
        "num_train": len(train_ex),
        "eval_file": str(data_cfg.eval_file),
        "max_length": data_cfg.max_length,
        "device": device,
        "start_metrics": start_metrics,
    }
    # What a resumed run must share with the saved one (the loop adds lr, batch size, steps).
    fingerprint = {
        "qat": cfg.model_dump(
            mode="json",
            exclude={"output_dir", "resume", "save_every_steps", "device", "teacher_precision"},
        ),
        "calibrated": str(calibrated),
        "calibrated_created": ckpt.manifest.get("created"),
        **{k: run_info[k] for k in ("teacher", "train_file", "max_length")},
    }
    settings = TrainSettings.from_config(cfg, cfg.seed, device)
    model.to(device)
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

        try:
            outcome = train(
                model,
                train_data,
                settings,
                evaluate,
                task.primary_metric,
                save_best,
                loss_fn,
                param_groups=amax_param_groups(learned, cfg.amax_learning_rate),
                checkpointing=Checkpointing(state_dir, cfg.save_every_steps, fingerprint),
            )
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(state_dir, cfg.save_every_steps)) from None
        except QtoolError as exc:  # a diverged loss: the best finished epoch stays usable
            if dist.is_main() and kind_of(out_dir) is Kind.QUANTIZED:
                mark_complete(out_dir, stopped=str(exc))
            raise
    if dist.is_main():  # rank 0 wrote the checkpoint and the state
        if outcome.best_epoch < 0 or kind_of(out_dir) is not Kind.QUANTIZED:
            raise QtoolError(f"QAT saved no checkpoint: {task.primary_metric} was never a number")
        mark_complete(out_dir, history=outcome.history)
        clear_train_state(state_dir)
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
        distilled=teacher is not None,
        notices=notices,
    )
