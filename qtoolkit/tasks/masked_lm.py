"""Masked language modelling on plain sentences (JSONL/TSV with `text`, as for calibration).

Evaluation is deterministic: every real token of every sentence is masked in turn (one probe
sequence per token, Salazar et al. 2020), which gives

* `masked_accuracy`: the share of probes whose top-1 prediction is the original token, and
* `pseudo_perplexity`: exp of minus the mean log-probability of the original tokens.

Training (finetune, QAT) masks 15% of the real tokens of each sentence per batch (80% [MASK],
10% a random token, 10% unchanged, as BERT was pre-trained), with a generator seeded from the
epoch's shuffle seed and the batch position, so an interrupted run resumes identically.

The logits are `[batch, seq, vocab]`; `MaskedLMData.reduce_outputs` keeps only the two numbers
per probe that the metrics need, so evaluation memory does not grow with the vocabulary.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from qtoolkit.data.text import read_data_examples
from qtoolkit.errors import QtoolError
from qtoolkit.tasks.base import INPUT_KEYS, TaskData, collate_inputs

__all__ = ["MaskedLMData", "MaskedLMTask"]

IGNORE = -100
MASK_SHARE = 0.15


class MaskedLMData(TaskData):
    """Sentences for training; one-token-masked probes (`meta`) for evaluation.

    `batches(with_labels=True)` (the training loop) iterates over the sentences with random
    masking; `batches()` (evaluation) iterates over the probes, and `lengths`, `labels` and
    `num_batches` for evaluation describe the probes.
    """

    def __post_init__(self) -> None:
        self.probes = self.meta["probes"]  # (features, position, original id) per probe
        self.lengths = [len(f["input_ids"]) for f, _, _ in self.probes]

    def __len__(self) -> int:
        return len(self.features)

    def num_batches(self, batch_size: int) -> int:
        return (len(self.features) + batch_size - 1) // batch_size

    def num_eval_batches(self, batch_size: int) -> int:
        return (len(self.probes) + batch_size - 1) // batch_size

    def batches(self, batch_size, *, with_labels=False, shuffle_seed=None, pad_to=None):
        if not with_labels:
            for start in range(0, len(self.probes), batch_size):
                chunk = [f for f, _, _ in self.probes[start : start + batch_size]]
                yield collate_inputs(self.tokenizer, chunk, pad_to)
            return
        order = list(range(len(self.features)))
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_inputs(self.tokenizer, [self.features[i] for i in idx], pad_to)
            gen = torch.Generator().manual_seed(hash((shuffle_seed or 0, start)) % (2**31))
            self._mask(batch, gen)
            yield batch

    def _mask(self, batch: dict, gen: torch.Generator) -> None:
        ids = batch["input_ids"]
        special = torch.tensor(
            [
                self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                for row in ids.tolist()
            ],
            dtype=torch.bool,
        )
        real = batch["attention_mask"].bool() & ~special
        chosen = (torch.rand(ids.shape, generator=gen) < MASK_SHARE) & real
        # At least one masked token per sentence, so every sentence contributes to the loss.
        none = real.any(dim=1) & ~chosen.any(dim=1)
        first_real = real.float().argmax(dim=1)
        chosen[none.nonzero().squeeze(1), first_real[none]] = True
        labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
        roll = torch.rand(ids.shape, generator=gen)
        masked = ids.clone()
        masked[chosen & (roll < 0.8)] = self.tokenizer.mask_token_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[swap] = torch.randint(len(self.tokenizer), ids.shape, generator=gen)[swap]
        batch["input_ids"] = masked
        batch["labels"] = labels

    def reduce_outputs(self, out: dict, batch_index: int, batch_size: int) -> dict:
        """Per probe: the log-probability of the original token and whether it is the top-1."""
        logits = out["logits"]
        start = batch_index * batch_size
        probes = self.probes[start : start + logits.shape[0]]
        pos = np.array([p for _, p, _ in probes])
        true = np.array([t for _, _, t in probes])
        rows = logits[np.arange(len(probes)), pos].astype(np.float64)
        log_z = np.log(np.exp(rows - rows.max(-1, keepdims=True)).sum(-1)) + rows.max(-1)
        return {
            "true_logprob": rows[np.arange(len(probes)), true] - log_z,
            "top1": rows.argmax(-1),
        }


class MaskedLMTask:
    name = "masked-lm"
    output_names = ("logits",)
    primary_metric = "masked_accuracy"

    def read(self, path: str | Path, data_cfg, limit: int | None = None):
        return read_data_examples(path, data_cfg, limit)

    def label_map(self, examples) -> dict:
        return {}

    def encode(self, tokenizer, examples, max_length: int, label2id=None) -> MaskedLMData:
        if tokenizer.mask_token_id is None:
            raise QtoolError("the tokenizer has no [MASK] token; masked LM needs one")
        pairs = [e.text_pair for e in examples]
        enc = tokenizer(
            [e.text for e in examples],
            pairs if all(p is not None for p in pairs) else None,
            truncation=True,
            max_length=max_length,
        )
        features = [{k: enc[k][i] for k in enc if k in INPUT_KEYS} for i in range(len(examples))]
        probes = []
        for f in features:
            special = tokenizer.get_special_tokens_mask(
                f["input_ids"], already_has_special_tokens=True
            )
            for pos, (token, is_special) in enumerate(zip(f["input_ids"], special, strict=True)):
                if is_special:
                    continue
                ids = list(f["input_ids"])
                ids[pos] = tokenizer.mask_token_id
                probes.append(({**f, "input_ids": ids}, pos, token))
        if not probes:
            raise QtoolError("no tokens to mask: the sentences are empty after tokenization")
        labels = [t for _, _, t in probes]
        return MaskedLMData(tokenizer, features, labels, {"probes": probes}, _no_collate)

    def evaluate(self, data: TaskData, rows: dict[str, list]) -> tuple[dict[str, float], list]:
        logprob = np.asarray(rows["true_logprob"], dtype=np.float64)
        top1 = np.asarray(rows["top1"])
        accuracy = float(np.mean(top1 == np.asarray(data.labels)))
        metrics = {
            "masked_accuracy": accuracy,
            "pseudo_perplexity": float(math.exp(-logprob.mean())),
            "masked_tokens": int(len(logprob)),
        }
        return metrics, [int(t) for t in top1]

    def example_scores(self, data: TaskData, predictions: list) -> list[float]:
        """1.0 per masked probe whose top-1 token is the original: the mean is masked_accuracy
        (pseudo-perplexity gets no interval)."""
        return [float(p == y) for p, y in zip(predictions, data.labels, strict=True)]


def _no_collate(labels, batch) -> None:  # training labels are made by MaskedLMData.batches
    raise AssertionError("MaskedLMData builds its own training labels")
