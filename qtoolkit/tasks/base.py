"""What every task provides, and the tokenized-data container the stages pass around."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["TaskData", "collate_inputs", "split_rows"]

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def collate_inputs(tokenizer, features: list[dict[str, list[int]]], pad_to: int | None = None):
    """Pad a list of tokenized features into a batch of tensors."""
    inputs = [{k: f[k] for k in INPUT_KEYS if k in f} for f in features]
    return dict(
        tokenizer.pad(
            inputs,
            padding="max_length" if pad_to else "longest",
            max_length=pad_to,
            return_tensors="pt",
        )
    )


def split_rows(outputs: list[dict[str, np.ndarray]], lengths: list[int]) -> dict[str, list]:
    """Per-feature rows from per-batch outputs (in feature order). Outputs with a sequence axis
    (QA start/end logits, token-classification logits) are trimmed to each feature's length."""
    rows: dict[str, list] = {}
    i = 0
    for out in outputs:
        n = next(iter(out.values())).shape[0]
        for name, array in out.items():
            per_token = name in ("start_logits", "end_logits") or array.ndim == 3
            for j in range(n):
                row = array[j][: lengths[i + j]] if per_token else array[j]
                rows.setdefault(name, []).append(row)
        i += n
    return rows


@dataclass
class TaskData:
    """Tokenized features with their training targets and what metrics need.

    `collate_labels(labels, batch)` adds the training target tensors to a padded batch.
    """

    tokenizer: Any
    features: list[dict[str, list[int]]]
    labels: list[Any]
    meta: Any
    collate_labels: Callable[[list[Any], dict], None]
    lengths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lengths = [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def batches(
        self,
        batch_size: int,
        *,
        with_labels: bool = False,
        shuffle_seed: int | None = None,
        pad_to: int | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        order = list(range(len(self.features)))
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_inputs(self.tokenizer, [self.features[i] for i in idx], pad_to)
            if with_labels:
                self.collate_labels([self.labels[i] for i in idx], batch)
            yield batch

    def num_batches(self, batch_size: int) -> int:
        return (len(self.features) + batch_size - 1) // batch_size
