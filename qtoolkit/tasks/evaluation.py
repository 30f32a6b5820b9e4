"""Scoring a runner on a task: metrics, predictions, label maps and agreement between runs."""

from __future__ import annotations

from typing import Any

from qtoolkit.errors import QtoolError

__all__ = [
    "agreement",
    "check_known_labels",
    "evaluate_runner",
    "label_map_for",
    "output_decisions",
    "output_drift",
    "output_kl",
    "task_options",
]


def task_options(task_name: str, data_cfg) -> dict[str, Any]:
    """The recipe's `data` settings a task's constructor takes."""
    return {"doc_stride": data_cfg.doc_stride} if task_name == "question-answering" else {}


def evaluate_runner(
    runner, task, data, batch_size: int, description: str = "evaluating", sink: list | None = None
):
    """(metrics, predictions) of `runner` (named inputs in, named numpy outputs out) on
    tokenized `data`; each batch's (reduced) outputs are also appended to `sink` if given."""
    from qtoolkit.finite import check_finite_outputs
    from qtoolkit.tasks.base import split_rows
    from qtoolkit.ui import track

    # Data may shrink each batch's outputs to what its metrics need (masked LM: vocab logits).
    reduce = getattr(data, "reduce_outputs", None)
    total = getattr(data, "num_eval_batches", data.num_batches)(batch_size)
    outputs = []
    for i, batch in enumerate(track(data.batches(batch_size), description, total=total)):
        out = runner(batch)
        check_finite_outputs(out, f"{description}, batch {i + 1}")
        outputs.append(reduce(out, i, batch_size) if reduce else out)
    if sink is not None:
        sink.extend(outputs)
    return task.evaluate(data, split_rows(outputs, data.lengths))


def label_map_for(task, examples, config, source: object = None) -> dict:
    """The label ids the model was trained with: integers map to themselves (and must be among
    the model's `num_labels`), names through the model config's label2id. `source` (the data
    file) is named in the error."""
    data_map = task.label_map(examples)
    where = f"{source}: " if source is not None else ""
    if not data_map or all(k == v for k, v in data_map.items()):
        num = getattr(config, "num_labels", None)
        outside = [k for k in data_map if num is not None and not 0 <= k < num]
        if outside:
            raise QtoolError(
                f"{where}labels {outside[:3]} are outside the model's label set 0..{num - 1}; "
                "fix the data or use a model with more labels"
            )
        return data_map
    model_map = dict(getattr(config, "label2id", {}) or {})
    missing = [k for k in data_map if k not in model_map]
    if missing:
        raise QtoolError(
            f"{where}labels {missing[:3]} are not among the model's labels {list(model_map)[:5]}"
        )
    return model_map


def check_known_labels(task, examples, label2id: dict, source: object = None) -> None:
    """Every label of `examples` must be in `label2id` (e.g. eval labels the training set had)."""
    unknown = [k for k in task.label_map(examples) if label2id and k not in label2id]
    if unknown:
        where = f"{source}: " if source is not None else ""
        raise QtoolError(
            f"{where}labels {unknown[:3]} are not in the model's label set {list(label2id)[:5]}"
        )


def output_drift(outputs: list[dict], reference: list[dict]) -> float:
    """Relative squared error of batch outputs against the reference run's (fp32):
    sum |o - r|^2 / sum |r|^2 over every batch and output. A continuous figure of how far a
    quantized model is from fp32, where agreement only counts the flips."""
    import numpy as np

    if len(outputs) != len(reference):
        raise QtoolError(f"cannot compare {len(outputs)} output batches with {len(reference)}")
    err = ref = 0.0
    for out, r in zip(outputs, reference, strict=True):
        for name, value in r.items():
            a, b = np.asarray(out[name], dtype=np.float64), np.asarray(value, dtype=np.float64)
            err += float(np.square(a - b).sum())
            ref += float(np.square(b).sum())
    return err / max(ref, 1e-30)


def output_kl(outputs: list[dict], reference: list[dict]) -> float:
    """Mean KL divergence KL(softmax(reference) || softmax(output)) over the last axis of every
    output (each example's logits, or each token's), averaged over rows and outputs. It weighs
    a logit error by how close the decision is, which is what flips it."""
    import numpy as np

    if len(outputs) != len(reference):
        raise QtoolError(f"cannot compare {len(outputs)} output batches with {len(reference)}")
    total, rows = 0.0, 0
    for out, r in zip(outputs, reference, strict=True):
        for name, value in r.items():
            ref = np.asarray(value, dtype=np.float64)
            got = np.asarray(out[name], dtype=np.float64)
            ref_log = ref - _logsumexp(ref)
            got_log = got - _logsumexp(got)
            kl = (np.exp(ref_log) * (ref_log - got_log)).sum(axis=-1)
            total += float(kl.sum())
            rows += kl.size
    return total / max(rows, 1)


def _logsumexp(x):
    import numpy as np

    top = x.max(axis=-1, keepdims=True)
    return top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def output_decisions(outputs: list[dict]) -> list:
    """The argmax of every row of every output, in order: what a label-free agreement counts."""
    import numpy as np

    decisions: list = []
    for out in outputs:
        for name in sorted(out):
            decisions.extend(np.asarray(out[name]).argmax(axis=-1).reshape(-1).tolist())
    return decisions


def agreement(a: Any, b: Any) -> float:
    """Share of identical predictions (labels, answer strings or tag sequences)."""
    if isinstance(a, dict):
        keys = list(a)
        a, b = [a[k] for k in keys], [b.get(k) for k in keys]
    if len(a) != len(b):
        raise QtoolError(f"cannot compare {len(a)} predictions with {len(b)}")
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)
