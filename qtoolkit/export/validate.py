"""Compare two runners on the same batches: an exported ONNX model in ONNX Runtime against the
PyTorch model (`validate_onnx`), or OpenVINO against ONNX Runtime on the same file
(`build-engine --runtime openvino`); both go through `compare_runners`.

Fake quantization in torch and Q/DQ in ORT round the same values, but not always identically
(x * (127/amax) in pytorch-quantization vs x / (amax/127) in ORT), so a value can land one
quantization step away and logits differ slightly. The check is therefore a pair: max absolute
difference on the outputs against a tolerance, and agreement of the argmax decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qtoolkit.errors import QtoolError
from qtoolkit.runtime.ort_runner import ort_session  # re-exported: sessions are made there

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "OutputComparison",
    "ValidationReport",
    "compare_runners",
    "ort_session",
    "per_token_outputs",
    "validate_onnx",
]


@dataclass
class OutputComparison:
    name: str
    max_abs_diff: float
    agree: int
    decisions: int

    @property
    def argmax_agreement(self) -> float:
        return self.agree / self.decisions if self.decisions else 1.0


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
        return min((o.argmax_agreement for o in self.outputs), default=1.0)

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
            if o.argmax_agreement < self.min_argmax_agreement:
                return (
                    f"output '{o.name}' argmax agrees with {self.reference} on "
                    f"{o.argmax_agreement:.1%} "
                    f"of {o.decisions} decisions (need {self.min_argmax_agreement:.1%}; max "
                    f"|diff| {o.max_abs_diff:.4g})"
                )
        return None

    def summary(self) -> str:
        pair = "onnx - torch" if self.reference == "PyTorch" else f"{self.candidate} - ort"
        return (
            f"max |{pair}| {self.max_abs_diff:.4g} (tolerance {self.atol:g}), argmax "
            f"agreement {self.argmax_agreement:.2%} on {self.num_examples} examples"
        )


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
    ref: np.ndarray, got: np.ndarray, mask: np.ndarray, per_token: bool
) -> tuple[float, int, int]:
    """(max |diff|, argmax agreements, decisions) for one output of one batch."""
    if ref.shape != got.shape:
        raise QtoolError(f"output shape {got.shape} != reference shape {ref.shape}")
    got = got.astype(np.float32)
    if ref.ndim == 2 and per_token:
        # One score per token (question answering): compare real tokens, argmax per example.
        valid = mask.astype(bool)
        diff = np.abs(ref - got)[valid]
        ref_m = np.where(valid, ref, -np.inf)
        got_m = np.where(valid, got, -np.inf)
        agree = int((ref_m.argmax(-1) == got_m.argmax(-1)).sum())
        return float(diff.max(initial=0.0)), agree, ref.shape[0]
    if ref.ndim == 3:
        # One prediction per token: compare real tokens only.
        valid = mask.astype(bool)
        diff = np.abs(ref - got)[valid]
        agree = int((ref.argmax(-1) == got.argmax(-1))[valid].sum())
        return float(diff.max(initial=0.0)), agree, int(valid.sum())
    diff = np.abs(ref - got)
    agree = int(
        (ref.reshape(ref.shape[0], -1).argmax(-1) == got.reshape(got.shape[0], -1).argmax(-1)).sum()
    )
    return float(diff.max(initial=0.0)), agree, ref.shape[0]


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
    totals = {n: [0.0, 0, 0] for n in names}
    for batch in batches:
        feed = named_feeds(candidate.input_names, batch)
        got, ref = candidate(feed), reference(feed)
        mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))
        for name in names:
            diff, agree, decisions = _compare(ref[name], got[name], mask, per_token.get(name))
            t = totals[name]
            t[0] = diff if not np.isfinite(diff) else max(t[0], diff)
            t[1] += agree
            t[2] += decisions
        report.num_examples += int(feed["input_ids"].shape[0])
    report.outputs = [OutputComparison(n, *totals[n]) for n in names]
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
