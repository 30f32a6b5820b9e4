"""Multiple choice (SWAG/ARC style) from JSONL: one question, N candidate answers, one correct.

Each line: `{"question": ..., "context": ..., "choices": [...], "label": i}` (`context` and
`question` are each optional, but one is needed; `label` is the index of the right choice or its
text). Every choice becomes one sequence pair, (context, question + choice), or
(question, choice) without a context, so the model's inputs are `[batch, choices, seq]` and it
scores each choice; the metric is accuracy of the highest-scoring one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import INPUT_KEYS, TaskData, collate_inputs

__all__ = ["ChoiceExample", "MultipleChoiceData", "MultipleChoiceTask", "read_choices"]


@dataclass(frozen=True)
class ChoiceExample:
    question: str
    context: str | None
    choices: tuple[str, ...]
    label: int | None

    def pairs(self) -> list[tuple[str, str]]:
        if self.context is None:
            return [(self.question, c) for c in self.choices]
        lead = f"{self.question} " if self.question else ""
        return [(self.context, lead + c) for c in self.choices]


def _example(row: dict, where: str) -> ChoiceExample:
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        raise QtoolError(f"{where}: 'choices' must be a list of at least two answers")
    for i, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            raise QtoolError(
                f"{where}: choice {i} is {json.dumps(choice)}; every choice must be a non-empty "
                "string"
            )
    for key in ("question", "context"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise QtoolError(f"{where}: '{key}' is {json.dumps(row[key])}, not a string")
    question = row.get("question") or ""
    context = row.get("context")
    if not question and not context:
        raise QtoolError(f"{where}: needs a 'question' or a 'context'")
    label = row.get("label")
    if label is not None and not isinstance(label, int):
        if label not in choices:
            raise QtoolError(f"{where}: label {label!r} is neither an index nor one of the choices")
        label = choices.index(label)
    if label is not None and not 0 <= label < len(choices):
        raise QtoolError(f"{where}: label {label} is out of range for {len(choices)} choices")
    return ChoiceExample(str(question), context, tuple(str(c) for c in choices), label)


def read_choices(path: str | Path, limit: int | None = None) -> list[ChoiceExample]:
    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"data file not found: {path}")
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise QtoolError(f"{path}: multiple choice reads JSONL (question/context, choices, label)")
    examples = []
    unlabelled: list[int] = []  # line numbers of questions without a label
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise QtoolError(f"{path}:{lineno}: not a JSON object") from None
            if not isinstance(row, dict):
                raise QtoolError(f"{path}:{lineno}: expected a JSON object per line")
            examples.append(_example(row, f"{path}:{lineno}"))
            if examples[-1].label is None:
                unlabelled.append(lineno)
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        raise QtoolError(f"{path} has no examples")
    if unlabelled and len(unlabelled) < len(examples):  # all or none (calibration text)
        raise QtoolError(
            f"{path}:{unlabelled[0]}: no 'label', while other questions have one "
            f"({len(unlabelled)} of {len(examples)} unlabelled); an unlabelled question would "
            "go unscored: label every question, or none"
        )
    counts = {len(e.choices) for e in examples}
    if len(counts) > 1:
        raise QtoolError(
            f"{path}: every question needs the same number of choices (found {sorted(counts)})"
        )
    return examples


class MultipleChoiceData(TaskData):
    """Features are lists of per-choice features; batches are `[batch, choices, seq]`."""

    def __post_init__(self) -> None:
        self.lengths = [max(len(c["input_ids"]) for c in f) for f in self.features]

    def batches(self, batch_size, *, with_labels=False, shuffle_seed=None, pad_to=None):
        import random

        order = list(range(len(self.features)))
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            flat = [c for i in idx for c in self.features[i]]
            batch = collate_inputs(self.tokenizer, flat, pad_to)
            n = len(self.features[idx[0]])
            batch = {k: v.view(len(idx), n, -1) for k, v in batch.items() if k in INPUT_KEYS}
            if with_labels:
                self.collate_labels([self.labels[i] for i in idx], batch)
            yield batch


class MultipleChoiceTask:
    name = "multiple-choice"
    output_names = ("logits",)
    primary_metric = "accuracy"

    def read(self, path: str | Path, data_cfg=None, limit: int | None = None):
        return read_choices(path, limit)

    def label_map(self, examples) -> dict:
        return {}  # labels are choice indices; the head has one output per choice

    def encode(self, tokenizer, examples: list[ChoiceExample], max_length: int, label2id=None):
        pairs = [p for e in examples for p in e.pairs()]
        enc = tokenizer(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            truncation="longest_first",
            max_length=max_length,
        )
        flat = [{k: enc[k][i] for k in enc if k in INPUT_KEYS} for i in range(len(pairs))]
        n = len(examples[0].choices)
        features = [flat[i * n : (i + 1) * n] for i in range(len(examples))]
        labels = [e.label for e in examples]
        return MultipleChoiceData(tokenizer, features, labels, examples, _collate)

    def evaluate(self, data: TaskData, rows: dict[str, list]) -> tuple[dict[str, float], list]:
        logits = np.stack(rows["logits"])
        preds = logits.argmax(axis=-1).tolist()
        labelled = [(p, y) for p, y in zip(preds, data.labels, strict=True) if y is not None]
        if not labelled:
            raise QtoolError("no labelled examples to evaluate multiple choice on")
        accuracy = float(np.mean([p == y for p, y in labelled]))
        return {"accuracy": accuracy}, preds

    def example_scores(self, data: TaskData, predictions: list) -> list[float]:
        """1.0 per labelled example answered right (unlabelled ones are not scored): their mean
        is the accuracy, so a paired bootstrap over them gives its difference's interval."""
        pairs = zip(predictions, data.labels, strict=True)
        return [float(p == y) for p, y in pairs if y is not None]


def _collate(labels: list[int | None], batch: dict) -> None:
    if any(y is None for y in labels):
        raise QtoolError("training needs a 'label' on every multiple-choice example")
    batch["labels"] = torch.tensor(labels, dtype=torch.long)
