"""Knowledge distillation from the fp32 model into the fake-quantized student.

    loss = label_weight * task loss + (1 - label_weight) * KD + hidden_mse_weight * MSE

At label_weight 0 the student runs without its labels (no task loss is computed at all), so a
training file without labels works: the teacher gives every target.

KD is Hinton et al.'s softened-logit loss, KL(p_teacher || p_student) with both distributions at
temperature T, times T^2 so its gradients keep their size as T changes; for extractive QA it is
the mean of the start-logit and end-logit terms. MSE compares the hidden states of every layer
(embeddings included) over real tokens only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qtoolkit.dist import global_count
from qtoolkit.errors import QtoolError

__all__ = [
    "LABEL_KEYS",
    "DistillSettings",
    "distillation_loss",
    "hidden_mse_loss",
    "kd_loss",
    "logits_kd_loss",
    "make_qat_loss",
]

LABEL_KEYS = ("labels", "start_positions", "end_positions")
LOGIT_NAMES = ("logits", "start_logits", "end_logits")


@dataclass(frozen=True)
class DistillSettings:
    temperature: float = 1.0
    label_weight: float = 0.0  # share of the task loss; the KD term gets 1 - label_weight
    hidden_mse_weight: float = 0.0

    @property
    def uses_labels(self) -> bool:
        return self.label_weight > 0


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) x T^2, softmax over the last axis, mean over all other rows."""
    s = student.reshape(-1, student.shape[-1]).float() / temperature
    t = teacher.reshape(-1, teacher.shape[-1]).float() / temperature
    kl = F.kl_div(
        F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="batchmean", log_target=True
    )
    return kl * temperature**2


def logits_kd_loss(student_out, teacher_out, temperature: float) -> torch.Tensor:
    """Mean KD over the logit outputs the model has (`logits`, or QA's start and end logits)."""
    terms = []
    for name in LOGIT_NAMES:
        s, t = getattr(student_out, name, None), getattr(teacher_out, name, None)
        if s is None or t is None:
            continue
        if s.shape != t.shape:
            raise QtoolError(f"student and teacher {name} differ in shape: {s.shape} vs {t.shape}")
        terms.append(kd_loss(s, t, temperature))
    if not terms:
        raise QtoolError("the model has no logits to distil")
    return torch.stack(terms).mean()


def hidden_mse_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over layers of the mean squared difference of (batch, seq, hidden) states, counting
    only positions where `attention_mask` is 1."""
    if len(student) != len(teacher):
        raise QtoolError(f"student has {len(student)} hidden states, teacher {len(teacher)}")
    losses = []
    # In a distributed step, the mean is over the real tokens of the whole global batch.
    tokens = None if attention_mask is None else global_count(attention_mask.float().sum())
    for s, t in zip(student, teacher, strict=True):
        sq = (s.float() - t.float()) ** 2
        if attention_mask is None:
            losses.append(sq.mean())
        else:
            mask = attention_mask.to(sq.dtype).unsqueeze(-1)
            losses.append((sq * mask).sum() / (tokens * sq.shape[-1]).clamp_min(1.0))
    return torch.stack(losses).mean()


def distillation_loss(
    task_loss: torch.Tensor | None,
    student_out,
    teacher_out,
    settings: DistillSettings,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """label_weight * task_loss + (1 - label_weight) * KD + hidden_mse_weight * MSE; each term
    only when its weight is above 0 (`task_loss` may be None when label_weight is 0)."""
    terms = []
    if settings.uses_labels:
        if task_loss is None:
            raise QtoolError("label_weight > 0 needs the task loss (a labelled batch)")
        terms.append(settings.label_weight * task_loss)
    if settings.label_weight < 1:
        kd = logits_kd_loss(student_out, teacher_out, settings.temperature)
        terms.append((1.0 - settings.label_weight) * kd)
    if settings.hidden_mse_weight > 0:
        terms.append(
            settings.hidden_mse_weight
            * hidden_mse_loss(student_out.hidden_states, teacher_out.hidden_states, attention_mask)
        )
    return torch.stack(terms).sum()


def make_qat_loss(
    teacher: nn.Module | None,
    settings: DistillSettings | None,
    teacher_dtype: torch.dtype | None = None,
):
    """The loss `train` calls: the task loss alone without a teacher, else `distillation_loss`
    with the teacher run without gradients (under autocast to `teacher_dtype` when given).
    The student is never autocast: its fake quantization rounds in fp32. With label_weight 0
    the student gets no labels, and a batch may have none."""
    if teacher is None or settings is None:
        return lambda model, batch: model(**batch).loss
    hidden = settings.hidden_mse_weight > 0
    labels = settings.uses_labels

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        device_type = next(iter(inputs.values())).device.type
        autocast = (
            torch.autocast(device_type, dtype=teacher_dtype)
            if teacher_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.no_grad(), autocast:
            teacher_out = teacher(**inputs, output_hidden_states=hidden)
        student_out = model(**(batch if labels else inputs), output_hidden_states=hidden)
        task_loss = student_out.loss if labels else None
        return distillation_loss(
            task_loss, student_out, teacher_out, settings, inputs.get("attention_mask")
        )

    return loss_fn
