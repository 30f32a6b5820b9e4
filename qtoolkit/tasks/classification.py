"""Single-sentence and sentence-pair classification (GLUE-style TSV, JSONL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtoolkit.data.text import TextExample, read_data_examples
from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import TaskData
from qtoolkit.tasks.metrics import classification_metrics

__all__ = ["NextSentencePredictionTask", "SequenceClassificationTask"]


class SequenceClassificationTask:
    name = "sequence-classification"
    output_names = ("logits",)
    primary_metric = "accuracy"

    def read(self, path: str | Path, data_cfg, limit: int | None = None) -> list[TextExample]:
        examples = read_data_examples(path, data_cfg, limit)
        if any(e.label is None for e in examples):
            raise QtoolError(f"{path}: every example needs a '{data_cfg.label_field}' field")
        return examples

    @staticmethod
    def label_map(examples: list[TextExample]) -> dict[Any, int]:
        """Integer labels map to themselves; strings map to their sorted order."""
        values = sorted({e.label for e in examples}, key=str)
        if all(_is_int(v) for v in values):
            return {v: int(v) for v in values}
        return {v: i for i, v in enumerate(values)}

    def encode(
        self, tokenizer, examples: list[TextExample], max_length: int, label2id: dict[Any, int]
    ) -> TaskData:
        pairs = [e.text_pair for e in examples]
        enc = tokenizer(
            [e.text for e in examples],
            pairs if all(p is not None for p in pairs) else None,
            truncation=True,
            max_length=max_length,
        )
        features = [{k: enc[k][i] for k in enc} for i in range(len(examples))]
        try:
            labels = [label2id[e.label] for e in examples]
        except KeyError as exc:
            raise QtoolError(f"label {exc.args[0]!r} is not one the model knows") from None
        return TaskData(tokenizer, features, labels, meta=None, collate_labels=_collate)

    def evaluate(self, data: TaskData, rows: dict[str, list]) -> tuple[dict[str, float], list]:
        logits = np.stack(rows["logits"])
        preds = logits.argmax(axis=-1).tolist()
        return classification_metrics(preds, data.labels), preds

    def example_scores(self, data: TaskData, predictions: list) -> list[float]:
        """1.0 where the prediction is the gold label: accuracy is their mean, so a paired
        bootstrap over them gives the interval of an accuracy difference."""
        return [float(p == y) for p, y in zip(predictions, data.labels, strict=True)]


class NextSentencePredictionTask(SequenceClassificationTask):
    """BERT's pre-training pair task: label 0 when `text_b` continues `text`, 1 when it is a
    random sentence; the head (`BertForNextSentencePrediction`) always has these two outputs."""

    name = "next-sentence-prediction"

    def read(self, path: str | Path, data_cfg, limit: int | None = None) -> list[TextExample]:
        examples = super().read(path, data_cfg, limit)
        if any(e.text_pair is None for e in examples):
            raise QtoolError(f"{path}: next-sentence prediction needs sentence pairs (text_b)")
        if any(str(e.label) not in ("0", "1") for e in examples):
            raise QtoolError(f"{path}: next-sentence labels are 0 (continues) or 1 (random)")
        return examples

    @staticmethod
    def label_map(examples: list[TextExample]) -> dict[Any, int]:
        return {e.label: int(e.label) for e in examples}


def _collate(labels: list[int], batch: dict) -> None:
    batch["labels"] = torch.tensor(labels, dtype=torch.long)


def _is_int(value: Any) -> bool:
    try:
        return int(value) == float(value)
    except (TypeError, ValueError):
        return False
