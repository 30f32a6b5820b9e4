"""The finetune stage: a float checkpoint + labelled data -> the best fp32 task checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import Kind, check_output_dir
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["FinetuneOutcome", "run_finetune", "save_float_checkpoint"]


@dataclass
class FinetuneOutcome:
    output_dir: Path
    best_metric: float
    primary_metric: str
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict[str, Any]]

    def summary(self) -> str:
        """What `qtool finetune` prints: one line per epoch, then the best one."""
        metric = self.primary_metric
        lines = [
            f"epoch {rec['epoch']}: loss {rec['loss']:.4f}, "
            f"{metric} {rec[metric]:.4f} ({rec['seconds']:.0f}s)"
            for rec in self.history
        ]
        lines.append(
            f"best {metric} {self.best_metric:.4f} at epoch {self.best_epoch}, "
            f"{self.steps} steps in {self.seconds:.0f}s; wrote {self.output_dir}"
        )
        return "\n".join(lines)


def save_float_checkpoint(
    model, tokenizer, out_dir: Path, info: dict[str, Any], inputs: tuple = ()
) -> None:
    """A plain Hugging Face checkpoint (usable as model.path) plus qtool's manifest."""
    from safetensors import SafetensorError

    from qtoolkit.artifacts import Kind, write_manifest, writing_dir
    from qtoolkit.errors import write_failed

    with writing_dir(out_dir, Kind.FLOAT, inputs) as tmp:
        try:
            model.save_pretrained(tmp)
        except SafetensorError as exc:  # a full disk, in safetensors' words
            raise write_failed(out_dir / "model.safetensors", exc) from None
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, Kind.FLOAT, **info)


def run_finetune(recipe: Recipe) -> FinetuneOutcome:
    from qtoolkit import dist
    from qtoolkit.models import load_model
    from qtoolkit.pipeline.common import resolve_device, split_evaluator, stage_task
    from qtoolkit.train.loop import TrainSettings, train

    cfg, data_cfg = recipe.finetune, recipe.data
    if data_cfg.train_file is None or data_cfg.eval_file is None:
        raise QtoolError("fine-tuning needs data.train_file and data.eval_file")
    out_dir = recipe.stage_dir("finetuned")
    inputs = (recipe.model.path, recipe.model.tokenizer, data_cfg.train_file, data_cfg.eval_file)
    check_output_dir(out_dir, Kind.FLOAT, inputs)  # before any work
    task = stage_task(recipe)
    train_ex = task.read(data_cfg.train_file, data_cfg, cfg.train_limit)
    label2id = task.label_map(train_ex)
    model_cfg = recipe.model
    if label2id:
        model_cfg = model_cfg.model_copy(update={"num_labels": max(label2id.values()) + 1})
    device = resolve_device(cfg.device)
    dist.init(device)  # under torchrun: data-parallel; rank 0 evaluates and saves
    loaded = load_model(model_cfg, seed=recipe.seed)
    model = loaded.model.to(device)
    if label2id and not all(isinstance(k, int) for k in label2id):
        model.config.label2id = {str(k): v for k, v in label2id.items()}
        model.config.id2label = {v: str(k) for k, v in label2id.items()}
    train_data = task.encode(loaded.tokenizer, train_ex, data_cfg.max_length, label2id)
    evaluator = split_evaluator(
        recipe, task, loaded.tokenizer, data_cfg.eval_file, label2id=label2id, device=device
    )

    def save_best(m, record: dict[str, Any]) -> None:
        save_float_checkpoint(
            m,
            loaded.tokenizer,
            out_dir,
            {
                "stage": "finetuned",
                "task": recipe.model.task,
                "source_model": recipe.model.path,
                "best": record,
                "finetune": cfg.model_dump(mode="json", exclude={"output_dir"}),
                "train_file": str(data_cfg.train_file),
                "num_train": len(train_ex),
            },
            inputs,
        )

    settings = TrainSettings.from_config(cfg, recipe.seed, device)
    outcome = train(model, train_data, settings, evaluator.metrics, task.primary_metric, save_best)
    return FinetuneOutcome(
        output_dir=out_dir,
        best_metric=outcome.best_metric,
        primary_metric=task.primary_metric,
        best_epoch=outcome.best_epoch,
        steps=outcome.steps,
        seconds=outcome.seconds,
        history=outcome.history,
    )
