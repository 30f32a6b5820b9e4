"""The `qat` recipe section: settings of `qtool qat`.

Kept out of recipe.py so that file stays small; `Recipe.qat` is a `QatConfig`. The defaults make
QAT a fidelity step: the INT8 model is trained to copy the fp32 model it was quantized from
(distillation only, labels unused), evaluated several times per epoch, and the step that agrees
best with fp32 on `data.eval_file` is kept. They were chosen by measurement on the dev split of
recipes/minilm-rt-sentiment.yaml with the TensorRT placement (scripts/qat_fidelity.py; the figures
are in docs/qat.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from qtoolkit.recipe_io import StrictModel

__all__ = ["QatConfig"]


class QatConfig(StrictModel):
    """Quantization-aware fine-tuning (used by `qtool qat`): starts from `start_from` (a quantized
    checkpoint or a `qtool quantize` output folder), else from the recipe's calibrated checkpoint
    (calibrating first if there is none), and trains with fake quantization on."""

    start_from: Path | None = Field(
        None,
        description="Quantized checkpoint to start from, or a `qtool quantize` output folder (its "
        "checkpoint/); default: the recipe's calibrated checkpoint.",
    )
    epochs: float = Field(0.5, gt=0, description="Passes over the training data (fractions too).")
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(5e-6, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    batch_size: int = Field(32, ge=1)
    train_limit: int | None = Field(None, ge=1, description="Use only the first N train examples.")
    learn_amax: bool = Field(
        False,
        description="Learn activation amax (LSQ gradients); weights' per-channel amax stay frozen.",
    )
    amax_learning_rate: float = Field(
        1e-3, gt=0, description="learn_amax: peak step of each amax, relative to its start value."
    )
    freeze_amax_after: float | None = Field(
        None,
        ge=0,
        le=1,
        description="learn_amax: freeze the learned ranges after this share of the steps (e.g. "
        "the warm-up); None: learned to the end.",
    )
    distill: bool = Field(True, description="Distil from the fp32 model (the fine-tuned one).")
    temperature: float = Field(0.5, gt=0, description="Softmax temperature of the logit KL.")
    label_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="With distill: share of the task (label) loss, the logit KL gets the rest; "
        "0: labels are ignored entirely, so unlabelled text trains too. Without distill the task "
        "loss is the whole loss.",
    )
    hidden_mse_weight: float = Field(
        0.0, ge=0, description="Weight of the per-layer hidden-state MSE to the teacher (0: off)."
    )
    dropout: bool = Field(
        False,
        description="Keep the model's dropout on while training (off: the student copies the "
        "teacher's deterministic function).",
    )
    evals_per_epoch: int = Field(
        4, ge=1, description="Evaluations on data.eval_file per epoch (and at the last step)."
    )
    select: Literal["agreement", "metric"] = Field(
        "agreement",
        description="Keep the step with the best agreement with fp32 on data.eval_file (ties: "
        "the lower KL to fp32), or with the best task metric.",
    )
    teacher_precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Teacher autocast dtype; auto: bf16 (else fp16) on CUDA, fp32 on CPU."
    )
    save_every_steps: int | None = Field(
        500, ge=1, description="Write the resumable training state every N steps and each epoch."
    )
    resume: bool = Field(
        True, description="Continue from a saved training state; false discards it and restarts."
    )
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: Path | None = Field(None, description="Default: <output_dir>/qat.")

    @model_validator(mode="before")
    @classmethod
    def _distill_weight(cls, data: Any) -> Any:
        """The older key distill_weight (w: (1 - w) x task loss + w x KL) is label_weight 1 - w."""
        if not isinstance(data, dict) or "distill_weight" not in data:
            return data
        if "label_weight" in data:
            raise ValueError("give label_weight or distill_weight (= 1 - label_weight), not both")
        data = dict(data)
        weight = data.pop("distill_weight")
        if isinstance(weight, (int, float)) and not isinstance(weight, bool):
            data["label_weight"] = 1.0 - float(weight)
        else:
            data["label_weight"] = weight  # the field's own validation names the bad value
        return data

    @model_validator(mode="after")
    def _freeze_needs_learning(self) -> QatConfig:
        if self.freeze_amax_after is not None and not self.learn_amax:
            raise ValueError("freeze_amax_after needs learn_amax")
        return self
