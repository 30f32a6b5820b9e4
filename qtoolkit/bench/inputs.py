"""Timing inputs: the same int64 arrays for every backend at one batch x sequence shape.

Real sentences are tokenized and padded (or truncated) to exactly the sequence length, so every
backend sees the shape it is timed at; an encoder does the same work on padding as on words, so
padding does not flatter the numbers. Without data, token ids are drawn from the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from qtoolkit.errors import QtoolError

if TYPE_CHECKING:
    from qtoolkit.data import TextExample
    from qtoolkit.recipe import Recipe

__all__ = ["Feeds", "choice_feeds", "read_timing_texts", "synthetic_feeds", "text_feeds"]

Feeds = dict[str, np.ndarray]


def read_timing_texts(recipe: Recipe, count: int) -> tuple[list[TextExample], str]:
    """Up to `count` sentences from data.calib_file (else data.test_file) and where they came
    from; ([], "synthetic ...") when the recipe names no data file."""
    from qtoolkit.data import read_data_examples

    data = recipe.data
    for path in (data.calib_file, data.test_file):
        if path is None:
            continue
        examples = read_data_examples(path, data, count)
        return examples, f"sentences from {path}"
    return [], "synthetic token ids (no data.calib_file or data.test_file)"


def text_feeds(tokenizer, examples: Sequence[TextExample], batch: int, seq: int) -> Feeds:
    """`batch` sentences (repeated if there are fewer) padded/truncated to `seq` tokens."""
    if not examples:
        raise QtoolError("no sentences to build timing inputs from")
    chunk = [examples[i % len(examples)] for i in range(batch)]
    pairs = [e.text_pair for e in chunk]
    enc = tokenizer(
        [e.text for e in chunk],
        pairs if all(p is not None for p in pairs) else None,
        padding="max_length",
        truncation=True,
        max_length=seq,
        return_tensors="np",
    )
    return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in enc.items()}


def synthetic_feeds(vocab_size: int, batch: int, seq: int, seed: int = 0) -> Feeds:
    """Random token ids (above the usual special-token range), full attention, one segment."""
    rng = np.random.default_rng(seed)
    low = min(1000, vocab_size // 2)
    ids = rng.integers(low, vocab_size, size=(batch, seq), dtype=np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def choice_feeds(tokenizer, examples: Sequence, batch: int, seq: int) -> Feeds:
    """Multiple choice: `batch` questions (repeated if there are fewer), each choice padded or
    truncated to `seq` tokens: `[batch, choices, seq]` arrays."""
    if not examples:
        raise QtoolError("no multiple-choice questions to build timing inputs from")
    chunk = [examples[i % len(examples)] for i in range(batch)]
    pairs = [p for e in chunk for p in e.pairs()]
    enc = tokenizer(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        padding="max_length",
        truncation="longest_first",
        max_length=seq,
        return_tensors="np",
    )
    n = len(chunk[0].choices)
    return {
        k: np.ascontiguousarray(v.reshape(batch, n, seq), dtype=np.int64) for k, v in enc.items()
    }
