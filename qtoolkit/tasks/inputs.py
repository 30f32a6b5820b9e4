"""Unlabelled model inputs for calibration, export validation and distillation-only QAT, shaped
as the task's head expects: `[batch, seq]` sentences for most heads, `[batch, choices, seq]` for
multiple choice."""

from __future__ import annotations

from pathlib import Path

__all__ = ["model_input_batches", "unlabelled_task_data"]


def model_input_batches(
    task_name: str,
    tokenizer,
    path: str | Path,
    data_cfg,
    limit: int | None,
    batch_size: int,
    pad_to_max_length: bool = False,
) -> tuple[list[dict], int]:
    """(batches of tensors, number of examples read) from `path` (up to `limit` examples)."""
    if task_name == "multiple-choice":
        from qtoolkit.tasks.multiple_choice import MultipleChoiceTask

        task = MultipleChoiceTask()
        examples = task.read(path, data_cfg, limit)
        data = task.encode(tokenizer, examples, data_cfg.max_length)
        pad_to = data_cfg.max_length if pad_to_max_length else None
        return list(data.batches(batch_size, pad_to=pad_to)), len(examples)
    from qtoolkit.data import read_data_examples, tokenize_batches

    examples = read_data_examples(path, data_cfg, limit)
    batches = tokenize_batches(
        tokenizer, examples, batch_size, data_cfg.max_length, pad_to_max_length
    )
    return batches, len(examples)


def unlabelled_task_data(task_name: str, tokenizer, path: str | Path, data_cfg, limit: int | None):
    """Training data without targets (`TaskData` whose batches carry inputs only): what
    distillation-only QAT trains on, since the teacher gives the targets. Labels in the file, if
    any, are read past and never used."""
    if task_name == "multiple-choice":
        from qtoolkit.tasks.multiple_choice import MultipleChoiceTask

        task = MultipleChoiceTask()
        examples = task.read(path, data_cfg, limit)
        data = task.encode(tokenizer, examples, data_cfg.max_length)
        data.labels = [None] * len(data.labels)
        data.collate_labels = _no_labels
        return data
    from qtoolkit.data import read_data_examples
    from qtoolkit.tasks.base import TaskData

    examples = read_data_examples(path, data_cfg, limit)
    pairs = [e.text_pair for e in examples]
    enc = tokenizer(
        [e.text for e in examples],
        pairs if all(p is not None for p in pairs) else None,
        truncation=True,
        max_length=data_cfg.max_length,
    )
    features = [{k: enc[k][i] for k in enc} for i in range(len(examples))]
    return TaskData(tokenizer, features, [None] * len(features), None, _no_labels)


def _no_labels(labels: list, batch: dict) -> None:
    """Adds nothing: the batch stays inputs only."""
