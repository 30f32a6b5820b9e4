"""Scoring a runner on a task: metrics, predictions, label maps and agreement between runs."""

from __future__ import annotations

from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["agreement", "evaluate_runner", "label_map_for", "task_options"]


def task_options(task_name: str, data_cfg) -> dict[str, Any]:
    """The recipe's `data` settings a task's constructor takes."""
    return {"doc_stride": data_cfg.doc_stride} if task_name == "question-answering" else {}


def evaluate_runner(runner, task, data, batch_size: int, description: str = "evaluating"):
    """(metrics, predictions) of `runner` (named inputs in, named numpy outputs out) on
    tokenized `data`."""
    from qtoolkit.tasks.base import split_rows
    from qtoolkit.ui import track

    # Data may shrink each batch's outputs to what its metrics need (masked LM: vocab logits).
    reduce = getattr(data, "reduce_outputs", None)
    total = getattr(data, "num_eval_batches", data.num_batches)(batch_size)
    outputs = []
    for i, batch in enumerate(track(data.batches(batch_size), description, total=total)):
        out = runner(batch)
        outputs.append(reduce(out, i, batch_size) if reduce else out)
    return task.evaluate(data, split_rows(outputs, data.lengths))


def label_map_for(task, examples, config) -> dict:
    """The label ids the model was trained with: integers map to themselves, names through the
    model config's label2id."""
    data_map = task.label_map(examples)
    if not data_map or all(k == v for k, v in data_map.items()):
        return data_map
    model_map = dict(getattr(config, "label2id", {}) or {})
    missing = [k for k in data_map if k not in model_map]
    if missing:
        raise QtoolError(
            f"labels {missing[:3]} are not among the model's labels {list(model_map)[:5]}"
        )
    return model_map


def agreement(a: Any, b: Any) -> float:
    """Share of identical predictions (labels, answer strings or tag sequences)."""
    if isinstance(a, dict):
        keys = list(a)
        a, b = [a[k] for k in keys], [b.get(k) for k in keys]
    if len(a) != len(b):
        raise QtoolError(f"cannot compare {len(a)} predictions with {len(b)}")
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)
