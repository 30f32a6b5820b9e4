"""Run an exported ONNX model in ONNX Runtime and compare it with the PyTorch model.

Fake quantization in torch and Q/DQ in ORT round the same values, but not always identically
(x * (127/amax) in pytorch-quantization vs x / (amax/127) in ORT), so a value can land one
quantization step away and logits differ slightly. The check is therefore a pair: max absolute
difference on the outputs against a tolerance (the hard check), and agreement of the argmax
decisions.

A decision whose top two scores are closer than the tolerance on both sides is a tie: rounding
noise flips it (a fresh or lightly trained head gives near-equal logits), so it counts neither
for nor against. The agreement bar applies to the decisive decisions only, those where either
side's top-1 margin exceeds the tolerance; the raw agreement over all decisions is reported too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qtoolkit.errors import QtoolError
from qtoolkit.finite import check_finite_outputs
from qtoolkit.runtime.ort_runner import ort_session  # re-exported: sessions are made there

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ArgmaxCounts",
    "OutputComparison",
    "ValidationReport",
    "argmax_counts",
    "compare_runners",
    "ort_session",
    "per_token_outputs",
    "validate_onnx",
]


@dataclass(frozen=True)
class ArgmaxCounts:
    """Argmax decisions of one output: all of them, and those with a top-1 margin over atol."""

    agree: int = 0
    decisions: int = 0
    decisive_agree: int = 0
    decisive: int = 0

    def __add__(self, other: ArgmaxCounts) -> ArgmaxCounts:
        return ArgmaxCounts(
            self.agree + other.agree,
            self.decisions + other.decisions,
            self.decisive_agree + other.decisive_agree,
            self.decisive + other.decisive,
        )


def _top1_margin(scores: np.ndarray) -> np.ndarray:
    """Best minus second-best score of each row (inf with one candidate, nan with none)."""
    if scores.shape[-1] < 2:
        return np.full(scores.shape[:-1], np.inf)
    top2 = np.partition(scores, -2, axis=-1)[..., -2:]
    with np.errstate(invalid="ignore"):  # -inf - -inf: a row with no candidate at all
        return top2[..., 1] - top2[..., 0]


def argmax_counts(
    ref: np.ndarray, got: np.ndarray, atol: float, valid: np.ndarray | None = None
) -> ArgmaxCounts:
    """Compare argmax over the last axis of `ref` and `got` (same shape), rows where `valid`.

    A row is decisive when either side's top-1 margin exceeds `atol`; where both margins are
    within it, a flip is rounding noise between near-equal scores, not a disagreement. Masked
    candidates (positions of a QA output) are -inf in both arrays and never win.
    """
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    same = ref.argmax(-1) == got.argmax(-1)
    decisive = (_top1_margin(ref) > atol) | (_top1_margin(got) > atol)
    if valid is not None:
        same, decisive = same[valid], decisive[valid]
    return ArgmaxCounts(
        agree=int(same.sum()),
        decisions=int(same.size),
        decisive_agree=int((same & decisive).sum()),
        decisive=int(decisive.sum()),
    )


@dataclass
class OutputComparison:
    name: str
    max_abs_diff: float
    counts: ArgmaxCounts = field(default_factory=ArgmaxCounts)

    @property
    def decisions(self) -> int:
        return self.counts.decisions

    @property
    def decisive(self) -> int:
        return self.counts.decisive

    @property
    def argmax_agreement(self) -> float:
        """Raw: over every decision, ties included."""
        c = self.counts
        return c.agree / c.decisions if c.decisions else 1.0

    @property
    def decisive_agreement(self) -> float | None:
        """Over decisions with a top-1 margin over atol; None when there is none."""
        c = self.counts
        return c.decisive_agree / c.decisive if c.decisive else None


@dataclass
class ValidationReport:
    atol: float
    min_argmax_agreement: float
    num_examples: int = 0
    outputs: list[OutputComparison] = field(default_factory=list)
    reference: str = "PyTorch"  # what the candidate is compared with, for the messages
    candidate: str = "ONNX Runtime"

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs), default=0.0)

    @property
    def argmax_agreement(self) -> float:
        """Raw agreement of the worst output, ties included (reported, not gated)."""
        return min((o.argmax_agreement for o in self.outputs), default=1.0)

    @property
    def decisive_agreement(self) -> float | None:
        """Agreement on decisive decisions of the worst output (gated); None if none is."""
        rates = [o.decisive_agreement for o in self.outputs if o.decisive]
        return min(rates) if rates else None

    @property
    def decisive(self) -> int:
        return sum(o.decisive for o in self.outputs)

    @property
    def decisions(self) -> int:
        return sum(o.decisions for o in self.outputs)

    @property
    def passed(self) -> bool:
        return self.failure() is None

    def failure(self) -> str | None:
        """A one-line reason the comparison failed, or None."""
        for o in self.outputs:
            if not np.isfinite(o.max_abs_diff):
                return f"output '{o.name}' has NaN/inf values in {self.candidate}"
            if o.max_abs_diff > self.atol:
                return (
                    f"output '{o.name}' differs from {self.reference} by up to "
                    f"{o.max_abs_diff:.4g} "
                    f"(tolerance {self.atol:g}; argmax agreement {o.argmax_agreement:.1%} on "
                    f"{self.num_examples} examples)"
                )
            rate = o.decisive_agreement
            if rate is not None and rate < self.min_argmax_agreement:
                return (
                    f"output '{o.name}' argmax agrees with {self.reference} on {rate:.1%} of "
                    f"{o.decisive} decisions with a top-1 margin over {self.atol:g} (need "
                    f"{self.min_argmax_agreement:.1%}; {o.argmax_agreement:.1%} of all "
                    f"{o.decisions}; max |diff| {o.max_abs_diff:.4g})"
                )
        return None

    def summary(self) -> str:
        pair = "onnx - torch" if self.reference == "PyTorch" else f"{self.candidate} - ort"
        head = (
            f"max |{pair}| {self.max_abs_diff:.4g} (tolerance {self.atol:g}), argmax "
            f"agreement {self.argmax_agreement:.2%} of {self.decisions} decisions"
        )
        rate = self.decisive_agreement
        if rate is None:
            tail = (
                f"; none has a top-1 margin over {self.atol:g}, so max |diff| alone decides "
                f"({self.num_examples} examples)"
            )
        else:
            tail = (
                f", {rate:.2%} of {self.decisive} with a top-1 margin over {self.atol:g} "
                f"(need {self.min_argmax_agreement:.0%}; {self.num_examples} examples)"
            )
        return head + tail

    def to_dict(self) -> dict[str, Any]:
        """Both agreement figures per output, for JSON manifests."""
        return {
            "passed": self.passed,
            "atol": self.atol,
            "min_argmax_agreement": self.min_argmax_agreement,
            "num_examples": self.num_examples,
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "decisive_agreement": self.decisive_agreement,
            "outputs": [
                {
                    "name": o.name,
                    "max_abs_diff": o.max_abs_diff,
                    "decisions": o.decisions,
                    "argmax_agreement": o.argmax_agreement,
                    "decisive_decisions": o.decisive,
                    "decisive_agreement": o.decisive_agreement,
                }
                for o in self.outputs
            ],
        }


def per_token_outputs(onnx_path: str | Path) -> dict[str, bool]:
    """Outputs with a sequence axis (named so by the export) hold one score per token."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    result = {}
    for out in graph.output:
        dims = out.type.tensor_type.shape.dim
        result[out.name] = len(dims) > 1 and "seq" in dims[1].dim_param
    return result


def _compare(
    ref: np.ndarray, got: np.ndarray, mask: np.ndarray, per_token: bool, atol: float
) -> tuple[float, ArgmaxCounts]:
    """(max |diff|, argmax counts) for one output of one batch."""
    if ref.shape != got.shape:
        raise QtoolError(f"output shape {got.shape} != reference shape {ref.shape}")
    got = got.astype(np.float32)
    if ref.ndim == 2 and per_token:
        # One score per token (question answering): compare real tokens, argmax per example.
        valid = mask.astype(bool)
        diff = np.abs(ref - got)[valid]
        ref_m = np.where(valid, ref, -np.inf)
        got_m = np.where(valid, got, -np.inf)
        return float(diff.max(initial=0.0)), argmax_counts(ref_m, got_m, atol)
    if ref.ndim == 3:
        # One prediction per token: compare real tokens only.
        valid = mask.astype(bool)
        diff = np.abs(ref - got)[valid]
        return float(diff.max(initial=0.0)), argmax_counts(ref, got, atol, valid)
    diff = np.abs(ref - got)
    rows = ref.shape[0]
    counts = argmax_counts(ref.reshape(rows, -1), got.reshape(rows, -1), atol)
    return float(diff.max(initial=0.0)), counts


def compare_runners(
    reference,
    candidate,
    batches: Sequence[Mapping[str, Any]],
    atol: float,
    min_argmax_agreement: float,
    per_token: Mapping[str, bool],
    names: Sequence[str] | None = None,
) -> ValidationReport:
    """Max |diff| and argmax agreement of `candidate` against `reference` (two runners) on
    every batch, per output (`names`, default the candidate's)."""
    from qtoolkit.runtime.runner import named_feeds

    if not batches:
        raise QtoolError("validation needs at least one tokenized sample batch")
    names = list(names or candidate.output_names)
    report = ValidationReport(
        atol, min_argmax_agreement, reference=_label(reference), candidate=_label(candidate)
    )
    max_diff = dict.fromkeys(names, 0.0)
    counts = {n: ArgmaxCounts() for n in names}
    for batch in batches:
        feed = named_feeds(candidate.input_names, batch)
        got, ref = candidate(feed), reference(feed)
        check_finite_outputs({n: ref[n] for n in names}, f"{report.reference} (validation)")
        mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))
        for name in names:
            diff, batch_counts = _compare(ref[name], got[name], mask, per_token.get(name), atol)
            # np.max, not max(): a NaN in either must stick.
            max_diff[name] = float(np.max([max_diff[name], diff]))
            counts[name] += batch_counts
        report.num_examples += int(feed["input_ids"].shape[0])
    report.outputs = [OutputComparison(n, max_diff[n], counts[n]) for n in names]
    return report


def _label(runner) -> str:
    runtime = str(getattr(runner, "runtime", "?"))
    return {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}.get(
        runtime, runtime
    )


def validate_onnx(
    onnx_path: str | Path,
    torch_model: nn.Module,
    sample_batches: Sequence[Mapping[str, Any]],
    atol: float,
    min_argmax_agreement: float,
    raise_on_failure: bool = True,
    threads: int | None = None,
) -> ValidationReport:
    """Compare ORT outputs of `onnx_path` with `torch_model` on every batch of `sample_batches`.

    Raises QtoolError (one line) when `raise_on_failure` and the comparison fails.
    """
    from qtoolkit.runtime.ort_runner import OrtRunner
    from qtoolkit.runtime.torch_runner import TorchRunner

    if not sample_batches:
        raise QtoolError("validation needs at least one tokenized sample batch")
    onnx_runner = OrtRunner(onnx_path, threads)
    names = list(onnx_runner.output_names)
    was_training = torch_model.training
    device = str(next(torch_model.parameters()).device)
    try:
        torch_runner = TorchRunner(torch_model, tuple(names), device)
        report = compare_runners(
            torch_runner,
            onnx_runner,
            sample_batches,
            atol,
            min_argmax_agreement,
            per_token_outputs(onnx_path),
            names,
        )
    finally:
        torch_model.train(was_training)
    if raise_on_failure and not report.passed:
        raise QtoolError(f"ONNX validation failed: {report.failure()}")
    return report
