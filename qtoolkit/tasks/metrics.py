"""Task metrics, written out so their definitions are visible: accuracy, F1, Matthews
correlation, SQuAD v1.1 exact match / F1, and entity-level F1 for IOB tagging."""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Sequence

import numpy as np

__all__ = [
    "classification_metrics",
    "squad_em_f1",
    "squad_example_f1",
    "normalize_answer",
    "entity_spans",
    "entity_f1",
]


def classification_metrics(preds: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """Accuracy, F1 (positive class 1 when binary, else macro) and Matthews correlation."""
    p = np.asarray(preds)
    y = np.asarray(labels)
    classes = sorted(set(y.tolist()) | set(p.tolist()))
    f1s = []
    for c in classes if len(classes) > 2 else [1]:
        tp = int(np.sum((p == c) & (y == c)))
        fp = int(np.sum((p == c) & (y != c)))
        fn = int(np.sum((p != c) & (y == c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": float(np.mean(p == y)) if len(y) else 0.0,
        "f1": float(np.mean(f1s)),
        "mcc": _mcc(p, y, classes),
    }


def _mcc(p: np.ndarray, y: np.ndarray, classes: list[int]) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K); equals the binary MCC for 2 classes."""
    k = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for yi, pi in zip(y.tolist(), p.tolist(), strict=True):
        cm[k[yi], k[pi]] += 1
    t, pk = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    denom = math.sqrt((s * s - pk @ pk) * (s * s - t @ t))
    return float((c * s - t @ pk) / denom) if denom else 0.0


def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower-case, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    true_tokens = normalize_answer(truth).split()
    common = collections.Counter(pred_tokens) & collections.Counter(true_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_em_f1(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, each the max over the gold answers, averaged."""
    em = f1 = 0.0
    for qid, gold in answers.items():
        pred = predictions.get(qid, "")
        em += max(float(normalize_answer(pred) == normalize_answer(g)) for g in gold)
        f1 += max(_f1(pred, g) for g in gold)
    n = max(len(answers), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def squad_example_f1(prediction: str, gold: Sequence[str]) -> float:
    """One question's F1 (0..1): the best over its gold answers."""
    return max(_f1(prediction, g) for g in gold)


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) chunks of an IOB1/IOB2 tag sequence; end is exclusive."""
    spans = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and label != kind)
        if kind is not None and (tag == "O" or begins):
            spans.add((kind, start, i))
            kind = None
        if tag != "O" and (begins or kind is None):
            kind, start = label, i
    return spans


def entity_f1(pred_tags: Sequence[Sequence[str]], true_tags: Sequence[Sequence[str]]) -> dict:
    """Micro precision/recall/F1 over exact entity chunks (the CoNLL-2003 measure)."""
    tp = n_pred = n_true = 0
    for pred, true in zip(pred_tags, true_tags, strict=True):
        ps, ts = entity_spans(pred), entity_spans(true)
        tp += len(ps & ts)
        n_pred += len(ps)
        n_true += len(ts)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
