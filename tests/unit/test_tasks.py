"""Task readers, encoders and metrics, on small handmade files in the standard formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import DataConfig
from qtoolkit.tasks import get_task, split_rows
from qtoolkit.tasks.metrics import (
    classification_metrics,
    entity_f1,
    entity_spans,
    normalize_answer,
    squad_em_f1,
)

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_classification_metrics_by_hand():
    m = classification_metrics([1, 0, 1, 1], [1, 0, 0, 1])
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(0.8)  # tp 2, fp 1, fn 0
    assert m["mcc"] == pytest.approx(2 / math.sqrt(12))  # (tp*tn - fp*fn) / sqrt(...)
    three = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1])
    assert three["accuracy"] == 0.75 and 0 < three["mcc"] < 1


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    scores = squad_em_f1(
        {"a": "the NVIDIA", "b": "in Paris France"}, {"a": ["NVIDIA"], "b": ["Paris"]}
    )
    assert scores["exact_match"] == 50.0
    assert scores["f1"] == pytest.approx(100 * (1 + 2 * (1 / 3) * 1 / (1 / 3 + 1)) / 2)


def test_entity_spans_iob1_and_iob2():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    assert entity_spans(["I-PER", "I-PER", "I-LOC"]) == {("PER", 0, 2), ("LOC", 2, 3)}
    f1 = entity_f1([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert f1["f1"] == 0.0  # a chunk with the wrong extent is wrong


def _one_hot_rows(data, n_labels=None):
    """Outputs that put all mass on the training targets, shaped as a model returns them."""
    rows = {}
    for target, length in zip(data.labels, data.lengths, strict=True):
        if isinstance(target, tuple):
            for key, pos in zip(("start_logits", "end_logits"), target, strict=True):
                row = np.full(length, -10.0)
                if target != (0, 0):
                    row[pos] = 10.0
                rows.setdefault(key, []).append(row)
        else:
            row = np.full((length, n_labels), -10.0)
            for k, lab in enumerate(target):
                row[k, max(lab, 0)] = 10.0
            rows.setdefault("logits", []).append(row)
    return rows


def test_qa_windows_and_decoding(tokenizer):
    task = get_task("question-answering", doc_stride=8)
    examples = task.read(DATA / "tiny_squad.json", DataConfig())
    assert [e.id for e in examples] == ["q1", "q2", "q3", "q4", "q5"]
    data = task.encode(tokenizer, examples, max_length=64, label2id={})
    assert len(data) > len(examples)  # long contexts were split into overlapping windows
    assert any(t == (0, 0) for t in data.labels)  # windows without the answer point at [CLS]
    metrics, preds = task.evaluate(data, _one_hot_rows(data))
    assert metrics == {"exact_match": 100.0, "f1": 100.0}, preds
    assert preds["q4"] == "Jane Doe"


def test_qa_rejects_non_squad(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"data": [{"oops": 1}]}))
    with pytest.raises(QtoolError, match="not SQuAD"):
        get_task("question-answering").read(bad, DataConfig())


def test_token_classification_round_trip(tokenizer):
    task = get_task("token-classification")
    examples = task.read(DATA / "tiny_conll.txt", DataConfig())
    assert len(examples) == 3 and examples[0][1][:2] == ["B-PER", "I-PER"]
    label2id = task.label_map(examples)
    assert label2id["O"] == 0
    data = task.encode(tokenizer, examples, 64, label2id)
    metrics, _ = task.evaluate(data, _one_hot_rows(data, len(label2id)))
    assert metrics["f1"] == 1.0
    rows = _one_hot_rows(data, len(label2id))
    rows["logits"][0][:, :] = 0  # first sentence: everything predicted "O"
    assert task.evaluate(data, rows)[0]["f1"] == pytest.approx(2 * (4 / 6) * 1 / (4 / 6 + 1))


def test_classification_string_labels(tmp_path, tokenizer):
    path = tmp_path / "d.tsv"
    path.write_text("sentence\tlabel\ngood movie\tpos\nbad film\tneg\n")
    task = get_task("sequence-classification")
    examples = task.read(path, DataConfig())
    assert task.label_map(examples) == {"neg": 0, "pos": 1}
    data = task.encode(tokenizer, examples, 16, task.label_map(examples))
    batch = next(data.batches(2, with_labels=True))
    assert batch["labels"].tolist() == [1, 0]


def test_classification_needs_labels(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "no label here"}\n')
    with pytest.raises(QtoolError, match="label"):
        get_task("sequence-classification").read(path, DataConfig())


def test_split_rows_trims_sequence_outputs():
    out = [{"start_logits": np.arange(8).reshape(2, 4), "logits": np.ones((2, 3))}]
    rows = split_rows(out, [3, 4])
    assert [len(r) for r in rows["start_logits"]] == [3, 4]
    assert rows["logits"][0].shape == (3,)
