"""Calibration text split into the sentences that set ranges and a held-out slice that scores
candidates, and the label-free scores on that slice (output drift against fp32).

A candidate is never scored on the sentences that set its ranges: a calibrator that fits those
sentences too closely would look best exactly where it is worst.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from qtoolkit.errors import QtoolError

__all__ = ["CalibSplit", "HoldoutScorer", "split_calibration"]

# Outputs wider than this (masked-LM vocabulary logits) are scored on fp32's top classes only.
_WIDE = 256
_TOP = 32
# The fewest calibration examples `qtool quantize` works with (8 held out, the rest for ranges).
MIN_EXAMPLES = 32


@dataclass
class CalibSplit:
    range_batches: list[dict]
    holdout_batches: list[dict]
    num_range: int
    num_holdout: int
    num_read: int


def _batch_size(batch: dict) -> int:
    return int(next(iter(batch.values())).shape[0])


def split_calibration(
    task_name: str, tokenizer, path, data_cfg, num_samples: int, holdout: int, batch_size: int
) -> CalibSplit:
    """Read up to `num_samples + holdout` examples; hold out the last `holdout` (or a quarter
    of a shorter file), whole batches, and keep at most `num_samples` for ranges."""
    from qtoolkit.tasks.inputs import model_input_batches

    batches, read = model_input_batches(
        task_name, tokenizer, path, data_cfg, num_samples + holdout, batch_size
    )
    if read < MIN_EXAMPLES:
        raise QtoolError(
            f"{path} has {read} examples; qtool quantize needs at least {MIN_EXAMPLES} (some set "
            "the ranges, the rest score the candidates)"
        )
    wanted = holdout if read >= num_samples + holdout else max(read // 4, 8)
    held: list[dict] = []
    count = 0
    while count < wanted and len(batches) > 1:
        held.insert(0, batches.pop())
        count += _batch_size(held[0])
    return CalibSplit(batches, held, read - count, count, read)


@dataclass
class HoldoutScorer:
    """fp32's outputs on the held-out batches, and the drift of any model from them."""

    batches: list[dict]
    output_names: tuple[str, ...]
    device: str
    reference: list[dict] | None = None
    _columns: dict[str, list[np.ndarray]] | None = None  # wide outputs: fp32's top classes

    def outputs(self, model, description: str = "held-out") -> list[dict]:
        from qtoolkit.runtime import TorchRunner
        from qtoolkit.ui import track

        runner = TorchRunner(model, self.output_names, self.device)
        result = []
        for i, batch in enumerate(track(self.batches, description, total=len(self.batches))):
            out = runner(batch)
            result.append({k: self._narrow(k, i, v) for k, v in out.items()})
        return result

    def _narrow(self, name: str, index: int, value: np.ndarray) -> np.ndarray:
        if value.shape[-1] <= _WIDE:
            return value
        if self._columns is None:
            self._columns = {}
        columns = self._columns.setdefault(name, [])
        if len(columns) <= index:  # the fp32 pass: remember its top classes per row
            columns.append(np.argsort(-value, axis=-1)[..., :_TOP])
        return np.take_along_axis(value, columns[index], axis=-1)

    def set_reference(self, model) -> None:
        self.reference = self.outputs(model, "fp32 (held-out)")

    def score(self, model, description: str = "held-out") -> dict[str, Any]:
        """kl, relative error and agreement (same argmax per row) with fp32."""
        from qtoolkit.tasks.evaluation import (
            agreement,
            output_decisions,
            output_drift,
            output_kl,
        )

        if self.reference is None:
            raise QtoolError("the fp32 reference of the held-out slice was not computed")
        outputs = self.outputs(model, description)
        return {
            "kl": output_kl(outputs, self.reference),
            "relative": output_drift(outputs, self.reference),
            "agreement": agreement(output_decisions(outputs), output_decisions(self.reference)),
        }
