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

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ArgmaxCounts",
    "OutputComparison",
    "ValidationReport",
    "argmax_counts",
    "ort_session",
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
                return f"output '{o.name}' has NaN/inf values in ONNX Runtime"
            if o.max_abs_diff > self.atol:
                return (
                    f"output '{o.name}' differs from PyTorch by up to {o.max_abs_diff:.4g} "
                    f"(tolerance {self.atol:g}; argmax agreement {o.argmax_agreement:.1%} on "
                    f"{self.num_examples} examples)"
                )
            rate = o.decisive_agreement
            if rate is not None and rate < self.min_argmax_agreement:
                return (
                    f"output '{o.name}' argmax agrees with PyTorch on {rate:.1%} of "
                    f"{o.decisive} decisions with a top-1 margin over {self.atol:g} (need "
                    f"{self.min_argmax_agreement:.1%}; {o.argmax_agreement:.1%} of all "
                    f"{o.decisions}; max |diff| {o.max_abs_diff:.4g})"
                )
        return None

    def summary(self) -> str:
        head = (
            f"max |onnx - torch| {self.max_abs_diff:.4g} (tolerance {self.atol:g}), argmax "
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


def ort_session(
    path: str | Path, threads: int | None = None, optimized_path: Path | None = None
) -> Any:
    """A CPU ONNX Runtime session with quiet logging."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(f"ONNX Runtime cannot load {path}: {first}") from None


def _feed(session, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    ids = np.asarray(_numpy(batch["input_ids"]), dtype=np.int64)
    feed = {}
    for inp in session.get_inputs():
        if inp.name in batch:
            feed[inp.name] = np.asarray(_numpy(batch[inp.name]), dtype=np.int64)
        elif inp.name == "attention_mask":
            feed[inp.name] = np.ones_like(ids)
        elif inp.name == "token_type_ids":
            feed[inp.name] = np.zeros_like(ids)
        else:
            raise QtoolError(f"sample batches have no '{inp.name}', which the ONNX model needs")
    return feed


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _torch_outputs(model, batch: Mapping[str, Any], names: Sequence[str]) -> list[np.ndarray]:
    import torch

    from qtoolkit.export.torch_export import input_names_for

    accepted = set(input_names_for(model))
    device = next(model.parameters()).device
    kwargs = {k: torch.as_tensor(v).to(device) for k, v in batch.items() if k in accepted}
    with torch.no_grad():
        out = model(**kwargs, return_dict=True)
    return [getattr(out, n).float().cpu().numpy() for n in names]


def _compare(
    ref: np.ndarray, got: np.ndarray, mask: np.ndarray, per_token: bool, atol: float
) -> tuple[float, ArgmaxCounts]:
    """(max |diff|, argmax counts) for one output of one batch."""
    if ref.shape != got.shape:
        raise QtoolError(f"ONNX output shape {got.shape} != PyTorch shape {ref.shape}")
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
    if not sample_batches:
        raise QtoolError("validation needs at least one tokenized sample batch")
    session = ort_session(onnx_path, threads)
    names = [o.name for o in session.get_outputs()]
    # Outputs with a sequence axis (named so by the export) hold one score per token.
    per_token = {
        o.name: len(o.shape) > 1 and isinstance(o.shape[1], str) and "seq" in o.shape[1]
        for o in session.get_outputs()
    }
    was_training = torch_model.training
    torch_model.eval()
    report = ValidationReport(atol=atol, min_argmax_agreement=min_argmax_agreement)
    max_diff = dict.fromkeys(names, 0.0)
    counts = {n: ArgmaxCounts() for n in names}
    try:
        for batch in sample_batches:
            feed = _feed(session, batch)
            got = session.run(names, feed)
            ref = _torch_outputs(torch_model, batch, names)
            mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))
            for name, r, g in zip(names, ref, got, strict=True):
                diff, batch_counts = _compare(r, g, mask, per_token[name], atol)
                # np.max, not max(): a NaN in either must stick.
                max_diff[name] = float(np.max([max_diff[name], diff]))
                counts[name] += batch_counts
            report.num_examples += int(feed["input_ids"].shape[0])
    finally:
        torch_model.train(was_training)
    report.outputs = [OutputComparison(n, max_diff[n], counts[n]) for n in names]
    if raise_on_failure and not report.passed:
        raise QtoolError(f"ONNX validation failed: {report.failure()}")
    return report
