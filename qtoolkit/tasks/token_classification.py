"""Token classification on CoNLL-style files: one `token ... tag` line per word (the tag is the
last column), a blank line between sentences, `-DOCSTART-` lines ignored. Metric: entity F1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import TaskData
from qtoolkit.tasks.metrics import entity_f1
from qtoolkit.textfiles import read_utf8

__all__ = ["TokenClassificationTask", "read_conll"]

IGNORE = -100


def read_conll(path: str | Path, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"data file not found: {path}")
    if limit is not None and limit < 1:
        raise QtoolError(f"limit must be >= 1, not {limit}")
    sentences, words, tags = [], [], []
    for lineno, line in enumerate(read_utf8(path).splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        if len(parts) < 2:
            raise QtoolError(f"{path}:{lineno}: expected 'token ... tag'")
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise QtoolError(f"{path} has no sentences")
    return sentences[:limit] if limit else sentences


class TokenClassificationTask:
    name = "token-classification"
    output_names = ("logits",)
    primary_metric = "f1"

    def read(self, path, data_cfg, limit=None):
        return read_conll(path, limit)

    @staticmethod
    def label_map(examples) -> dict[str, int]:
        tags = sorted({t for _, ts in examples for t in ts})
        return {t: i for i, t in enumerate(["O", *[t for t in tags if t != "O"]])}

    def encode(self, tokenizer, examples, max_length: int, label2id: dict[str, int]) -> TaskData:
        enc = tokenizer(
            [w for w, _ in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        features, labels, word_maps = [], [], []
        for i, (_, tags) in enumerate(examples):
            word_ids = enc.word_ids(i)
            seen, label_row = set(), []
            for w in word_ids:
                if w is None or w in seen:
                    label_row.append(IGNORE)  # special tokens and continuation pieces
                else:
                    seen.add(w)
                    if tags[w] not in label2id:
                        raise QtoolError(f"tag {tags[w]!r} is not one the model knows")
                    label_row.append(label2id[tags[w]])
            features.append({k: enc[k][i] for k in enc})
            labels.append(label_row)
            word_maps.append(word_ids)
        id2label = {v: k for k, v in label2id.items()}
        return TaskData(tokenizer, features, labels, (examples, word_maps, id2label), _collate)

    def evaluate(self, data: TaskData, rows: dict[str, list]) -> tuple[dict[str, float], list]:
        examples, word_maps, id2label = data.meta
        pred_tags, true_tags = [], []
        for i, (words, tags) in enumerate(examples):
            pred_ids = np.asarray(rows["logits"][i]).argmax(axis=-1)
            first = {}
            for k, w in enumerate(word_maps[i]):
                if w is not None and w not in first:
                    first[w] = k
            # Words cut off by truncation are predicted "O".
            pred = [
                id2label[int(pred_ids[first[w]])] if w in first else "O" for w in range(len(words))
            ]
            pred_tags.append(pred)
            true_tags.append(tags)
        return entity_f1(pred_tags, true_tags), pred_tags

    def example_scores(self, data: TaskData, predictions: list) -> None:
        """None: entity F1 is a ratio of corpus-wide counts, not a mean over sentences, so a
        bootstrap over per-sentence scores would not be the metric's interval."""
        return None


def _collate(labels: list[list[int]], batch: dict) -> None:
    width = batch["input_ids"].shape[1]
    batch["labels"] = torch.tensor(
        [row + [IGNORE] * (width - len(row)) for row in labels], dtype=torch.long
    )
