"""Extractive QA in SQuAD v1.1 JSON: document-stride windows, n-best span decoding, EM/F1."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import TaskData
from qtoolkit.tasks.metrics import squad_em_f1, squad_example_f1
from qtoolkit.textfiles import read_utf8

__all__ = ["QuestionAnsweringTask", "QAExample", "read_squad"]


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character start)


def read_squad(path: str | Path, limit: int | None = None) -> list[QAExample]:
    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"data file not found: {path}")
    if limit is not None and limit < 1:
        raise QtoolError(f"limit must be >= 1, not {limit}")
    try:
        doc = json.loads(read_utf8(path))
        examples = [
            QAExample(
                str(qa["id"]),
                qa["question"],
                para["context"],
                tuple((a["text"], int(a["answer_start"])) for a in qa.get("answers", [])),
            )
            for article in doc["data"]
            for para in article["paragraphs"]
            for qa in para["qas"]
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise QtoolError(f"{path} is not SQuAD v1.1 JSON ({type(exc).__name__}: {exc})") from None
    if not examples:
        raise QtoolError(f"{path} has no questions")
    return examples[:limit] if limit else examples


class QuestionAnsweringTask:
    name = "question-answering"
    output_names = ("start_logits", "end_logits")
    primary_metric = "f1"

    def __init__(self, doc_stride: int = 128, max_answer_tokens: int = 30, n_best: int = 20):
        self.doc_stride = doc_stride
        self.max_answer_tokens = max_answer_tokens
        self.n_best = n_best

    def read(self, path: str | Path, data_cfg, limit: int | None = None) -> list[QAExample]:
        return read_squad(path, limit)

    def label_map(self, examples) -> dict:
        return {}

    def encode(self, tokenizer, examples: list[QAExample], max_length: int, label2id=None):
        """Question + context windows of `max_length` tokens overlapping by `doc_stride`."""
        # The context window is what the longest question leaves; the overlap must be smaller
        # than it (the tokenizer panics otherwise).
        longest_question = max(len(tokenizer(e.question)["input_ids"]) for e in examples)
        window = max_length - longest_question - 1
        if window < 8:
            raise QtoolError(
                f"max_length {max_length} leaves no room for the context after a "
                f"{longest_question}-token question; raise data.max_length"
            )
        stride = min(self.doc_stride, window // 2)
        enc = tokenizer(
            [e.question for e in examples],
            [e.context for e in examples],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        features, labels, windows = [], [], []
        for i in range(len(enc["input_ids"])):
            ex_idx = enc["overflow_to_sample_mapping"][i]
            seq_ids = enc.sequence_ids(i)
            # Offsets only for context tokens, so decoding never picks the question.
            offsets = [
                o if seq_ids[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])
            ]
            features.append(
                {
                    k: enc[k][i]
                    for k in ("input_ids", "attention_mask", "token_type_ids")
                    if k in enc
                }
            )
            labels.append(_target_positions(examples[ex_idx], offsets))
            windows.append((ex_idx, offsets))
        return TaskData(tokenizer, features, labels, (examples, windows), _collate)

    def evaluate(self, data: TaskData, rows: dict[str, list]) -> tuple[dict[str, float], dict]:
        examples, windows = data.meta
        best: dict[int, tuple[float, str]] = {}
        for f_idx, (ex_idx, offsets) in enumerate(windows):
            start, end = rows["start_logits"][f_idx], rows["end_logits"][f_idx]
            context = examples[ex_idx].context
            for s in np.argsort(start)[::-1][: self.n_best]:
                for e in np.argsort(end)[::-1][: self.n_best]:
                    if s >= len(offsets) or e >= len(offsets):
                        continue
                    if offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > self.max_answer_tokens:
                        continue
                    score = float(start[s] + end[e])
                    if ex_idx not in best or score > best[ex_idx][0]:
                        best[ex_idx] = (score, context[offsets[s][0] : offsets[e][1]])
        predictions = {e.id: best.get(i, (0.0, ""))[1] for i, e in enumerate(examples)}
        answers = {e.id: [a[0] for a in e.answers] or [""] for e in examples}
        return squad_em_f1(predictions, answers), predictions

    def example_scores(self, data: TaskData, predictions: dict) -> list[float]:
        """Per-question SQuAD F1 as a fraction (its mean x 100 is the `f1` metric), in
        question order."""
        examples, _ = data.meta
        return [
            squad_example_f1(predictions.get(e.id, ""), [a[0] for a in e.answers] or [""])
            for e in examples
        ]


def _target_positions(example: QAExample, offsets: list) -> tuple[int, int]:
    """Token start/end of the first answer inside this window, or (0, 0) (the [CLS] token)."""
    if not example.answers:
        return 0, 0
    text, char_start = example.answers[0]
    char_end = char_start + len(text)
    start = end = None
    for k, o in enumerate(offsets):
        if o is None:
            continue
        if start is None and o[0] <= char_start < o[1]:
            start = k
        if o[0] < char_end <= o[1]:
            end = k
    if start is None or end is None or end < start:
        return 0, 0
    return start, end


def _collate(labels: list[tuple[int, int]], batch: dict) -> None:
    batch["start_positions"] = torch.tensor([s for s, _ in labels], dtype=torch.long)
    batch["end_positions"] = torch.tensor([e for _, e in labels], dtype=torch.long)
