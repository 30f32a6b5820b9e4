"""Per-example scores of each task and the comparison rows built on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtoolkit.recipe import DataConfig
from qtoolkit.tasks import get_task
from qtoolkit.tasks.base import TaskData
from qtoolkit.tasks.compare import agreement_cell, compare_predictions, delta_cell

from .test_tasks import _one_hot_rows, tokenizer  # noqa: F401  (fixture)

DATA = Path(__file__).resolve().parents[1] / "data"


def _labels_only(labels):
    return TaskData(None, [{"input_ids": [0]}] * len(labels), labels, None, lambda *_: None)


def test_classification_scores_average_to_accuracy():
    task = get_task("sequence-classification")
    data = _labels_only([0, 1, 1, 0, 1])
    preds = [0, 1, 0, 0, 0]
    scores = task.example_scores(data, preds)
    assert scores == [1.0, 1.0, 0.0, 1.0, 0.0]
    from qtoolkit.tasks.metrics import classification_metrics

    assert sum(scores) / len(scores) == classification_metrics(preds, data.labels)["accuracy"]


def test_qa_scores_average_to_f1(tokenizer):  # noqa: F811
    task = get_task("question-answering", doc_stride=8)
    examples = task.read(DATA / "tiny_squad.json", DataConfig())
    data = task.encode(tokenizer, examples, max_length=64, label2id={})
    metrics, preds = task.evaluate(data, _one_hot_rows(data))
    preds = {**preds, "q4": "Jane"}  # half of a two-word answer
    from qtoolkit.tasks.metrics import squad_em_f1

    answers = {e.id: [a[0] for a in e.answers] or [""] for e in examples}
    f1 = squad_em_f1(preds, answers)["f1"]
    scores = task.example_scores(data, preds)
    assert len(scores) == len(examples) and min(scores) < 1.0
    assert 100 * sum(scores) / len(scores) == pytest.approx(f1)


def test_compare_rows_carry_intervals_and_ties():
    task = get_task("sequence-classification")
    labels = [i % 2 for i in range(200)]
    data = _labels_only(labels)
    ref = list(labels)  # the reference is always right
    worse = [1 - y if i < 40 else y for i, y in enumerate(labels)]  # 40 of 200 wrong
    row = compare_predictions(task, data, worse, ref)
    assert row["delta_points"] == pytest.approx(-20.0) and row["tie"] is False
    assert row["delta"]["high"] < 0 and row["agreement"] == pytest.approx(0.8)
    assert delta_cell(row).startswith("-20.00 [") and "tie" not in delta_cell(row)
    assert agreement_cell(row).startswith("80.00% [")
    own = row["metric_interval"]  # the compared model's accuracy, 0.8, with its interval
    assert own["value"] == pytest.approx(0.8) and own["low"] < 0.8 < own["high"] < 0.9
    nearly = [1 - y if i == 0 else y for i, y in enumerate(labels)]  # one sentence differs
    tie = compare_predictions(task, data, nearly, ref)
    assert tie["tie"] is True and delta_cell(tie).endswith(" tie")


def test_ner_has_no_interval():
    task = get_task("token-classification")
    data = _labels_only([[0], [0]])
    row = compare_predictions(task, data, [["O"], ["B-PER"]], [["O"], ["O"]], -0.25)
    assert row["delta"] is None and row["tie"] is None and row["delta_points"] == -25.0
    assert row["metric_interval"] is None
    assert delta_cell(row) == "-25.00 (no interval)"
    assert row["agreement"] == 0.5
