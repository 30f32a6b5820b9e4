"""Tokenized batches for calibration and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from qtoolkit.data.text import TextExample

__all__ = ["tokenize_batches"]


def tokenize_batches(
    tokenizer,
    examples: Sequence[TextExample],
    batch_size: int,
    max_length: int,
    pad_to_max_length: bool = False,
) -> list[dict]:
    """Dicts of tensors (`input_ids`, `attention_mask`, `token_type_ids` where the model uses
    them), truncated to `max_length` and padded to the batch's longest sequence (or to
    `max_length` with `pad_to_max_length`)."""
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        texts = [e.text for e in chunk]
        pairs = [e.text_pair for e in chunk]
        enc = tokenizer(
            texts,
            pairs if all(p is not None for p in pairs) else None,
            padding="max_length" if pad_to_max_length else "longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batches.append(dict(enc))
    return batches
