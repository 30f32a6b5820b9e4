"""What `qtool qat` starts from: the quantized checkpoint, the fp32 teacher and the training data.

The start is `qat.start_from` when given (a quantized checkpoint, or a `qtool quantize` output
folder whose checkpoint/ is one), else the recipe's calibrated checkpoint, calibrated first when
there is none. The teacher is the fp32 model quantization started from (the recipe's fine-tuned
checkpoint, else `model.path`, else the start checkpoint's `source_model`).
"""

from __future__ import annotations

from pathlib import Path

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import ModelConfig, Recipe

__all__ = [
    "UNLABELLED_TASKS",
    "check_hidden_mse",
    "load_teacher",
    "resolve_start",
    "start_checkpoint",
    "teacher_source",
    "train_data",
]

# Tasks whose training targets come from a label field alone: at label_weight 0 their training
# file is read as plain text (labels, if any, read past). The others keep their own reader
# (QA's and token classification's features depend on their annotations; masked LM makes its
# targets from the text).
UNLABELLED_TASKS = frozenset(
    {"sequence-classification", "next-sentence-prediction", "multiple-choice"}
)


def resolve_start(path: str | Path) -> Path:
    """The quantized checkpoint at `path`: the folder itself, or a quantize output's checkpoint/."""
    from qtoolkit.artifacts import QUANTIZED_SUBDIR, Kind, kind_of

    path = Path(path)
    if kind_of(path) is Kind.QUANTIZED:
        return path
    if kind_of(path / QUANTIZED_SUBDIR) is Kind.QUANTIZED:
        return path / QUANTIZED_SUBDIR
    what = "does not exist" if not path.exists() else "is not a quantized checkpoint"
    raise QtoolError(
        f"--from {path} {what} (give a folder written by qtool calibrate, qtool qat or "
        "qtool quantize)"
    )


def teacher_source(recipe: Recipe, start_manifest: dict | None = None) -> ModelConfig:
    """The fp32 model: the recipe's fine-tuned checkpoint or model.path, else the start
    checkpoint's source model."""
    from qtoolkit.pipeline.common import quant_source

    source, _ = quant_source(recipe)
    if source.path is None and start_manifest and start_manifest.get("source_model"):
        return source.model_copy(update={"path": str(start_manifest["source_model"])})
    return source


def start_checkpoint(recipe: Recipe, source: ModelConfig, device: str, notices: list[str]):
    """(folder, calibrated_now, checkpoint): `qat.start_from`, else the calibrated checkpoint
    (calibrating `source` first when there is none)."""
    from qtoolkit.artifacts import Kind, kind_of
    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.quant import load_quantized

    calibrated_now = False
    if recipe.qat.start_from is not None:
        start = resolve_start(recipe.qat.start_from)
    else:
        start = recipe.stage_dir("calibrated")
        if kind_of(start) is not Kind.QUANTIZED:
            if recipe.data.calib_file is None:
                raise QtoolError(
                    f"no calibrated checkpoint in {start} and no data.calib_file to calibrate "
                    "with (run qtool calibrate or qtool quantize first, or pass --from)"
                )
            result = run_calibrate(recipe.model_copy(update={"model": source}))
            notices.extend(result.notices)
            notices.append(f"calibrated {source.path} first ({recipe.calib.method}): {start}")
            calibrated_now = True
    ckpt = load_quantized(start, device=device)
    if ckpt.manifest["task"] != recipe.model.task:
        raise QtoolError(
            f"{start} is a {ckpt.manifest['task']} model but the recipe's task is "
            f"{recipe.model.task}"
        )
    made_from = ckpt.manifest.get("source_model")
    if made_from and source.path and Path(made_from) != Path(source.path):
        notices.append(f"{start} was quantized from {made_from}, not from {source.path}")
    return start, calibrated_now, ckpt


def load_teacher(source: ModelConfig, recipe: Recipe, device: str):
    """The fp32 model quantization starts from, frozen: the distillation teacher and the
    reference agreement is measured against."""
    from qtoolkit.models import load_model

    if source.path is None:
        raise QtoolError("no fp32 model to distil from: set model.path (or run qtool finetune)")
    loaded = load_model(source, seed=recipe.seed)
    if loaded.newly_initialized:
        raise QtoolError(
            f"distillation and agreement need a fine-tuned fp32 teacher, but {source.path} has "
            f"no trained {source.task} head: run qtool finetune first"
        )
    teacher = loaded.model.to(device).eval()
    teacher.requires_grad_(False)
    return teacher


def check_hidden_mse(quant_manifest: dict, hidden_mse_weight: float) -> None:
    """SmoothQuant folded into a LayerNorm (qkv, ffn_in) scales the hidden states per channel:
    an MSE against the teacher's would pull them the wrong way."""
    sq = (quant_manifest or {}).get("smoothquant")
    folded = sorted(set((sq or {}).get("sites", [])) & {"qkv", "ffn_in"})
    if hidden_mse_weight > 0 and folded:
        raise QtoolError(
            f"qat.hidden_mse_weight needs hidden states comparable with fp32's, but the start "
            f"checkpoint has SmoothQuant folded at {', '.join(folded)} (hidden states scaled "
            "per channel): set qat.hidden_mse_weight 0 or start from a checkpoint without them"
        )


def train_data(recipe: Recipe, task, tokenizer, config, labelled: bool):
    """(TaskData, number of examples, label2id) of data.train_file. Without `labelled` the
    tasks of UNLABELLED_TASKS read it as plain text: no labels are needed or used."""
    from qtoolkit.tasks.evaluation import label_map_for
    from qtoolkit.tasks.inputs import unlabelled_task_data

    cfg, data_cfg = recipe.qat, recipe.data
    if not labelled and recipe.model.task in UNLABELLED_TASKS:
        data = unlabelled_task_data(
            recipe.model.task, tokenizer, data_cfg.train_file, data_cfg, cfg.train_limit
        )
        return data, len(data.labels), None
    examples = task.read(data_cfg.train_file, data_cfg, cfg.train_limit)
    label2id = label_map_for(task, examples, config, data_cfg.train_file)
    data = task.encode(tokenizer, examples, data_cfg.max_length, label2id)
    return data, len(examples), label2id
