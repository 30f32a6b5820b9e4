"""Unlabelled model inputs for calibration and export validation, shaped as the task's head
expects: `[batch, seq]` sentences for most heads, `[batch, choices, seq]` for multiple choice."""

from __future__ import annotations

from pathlib import Path

__all__ = ["model_input_batches"]


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
