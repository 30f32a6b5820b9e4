"""Run an exported ONNX model in ONNX Runtime and compare it with the PyTorch model.

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
from qtoolkit.finite import check_finite_outputs

if TYPE_CHECKING:
    from torch import nn

__all__ = ["OutputComparison", "ValidationReport", "ort_session", "validate_onnx"]


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
                return f"output '{o.name}' has NaN/inf values in ONNX Runtime"
            if o.max_abs_diff > self.atol:
                return (
                    f"output '{o.name}' differs from PyTorch by up to {o.max_abs_diff:.4g} "
                    f"(tolerance {self.atol:g}; argmax agreement {o.argmax_agreement:.1%} on "
                    f"{self.num_examples} examples)"
                )
            if o.argmax_agreement < self.min_argmax_agreement:
                return (
                    f"output '{o.name}' argmax agrees with PyTorch on {o.argmax_agreement:.1%} "
                    f"of {o.decisions} decisions (need {self.min_argmax_agreement:.1%}; max "
                    f"|diff| {o.max_abs_diff:.4g})"
                )
        return None

    def summary(self) -> str:
        return (
            f"max |onnx - torch| {self.max_abs_diff:.4g} (tolerance {self.atol:g}), argmax "
            f"agreement {self.argmax_agreement:.2%} on {self.num_examples} examples"
        )


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
    ref: np.ndarray, got: np.ndarray, mask: np.ndarray, per_token: bool
) -> tuple[float, int, int]:
    """(max |diff|, argmax agreements, decisions) for one output of one batch."""
    if ref.shape != got.shape:
        raise QtoolError(f"ONNX output shape {got.shape} != PyTorch shape {ref.shape}")
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
    totals = {n: [0.0, 0, 0] for n in names}
    try:
        for batch in sample_batches:
            feed = _feed(session, batch)
            got = session.run(names, feed)
            ref = _torch_outputs(torch_model, batch, names)
            check_finite_outputs(dict(zip(names, ref, strict=True)), "PyTorch (validation)")
            mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))
            for name, r, g in zip(names, ref, got, strict=True):
                diff, agree, decisions = _compare(r, g, mask, per_token[name])
                t = totals[name]
                t[0] = diff if not np.isfinite(diff) else max(t[0], diff)
                t[1] += agree
                t[2] += decisions
            report.num_examples += int(feed["input_ids"].shape[0])
    finally:
        torch_model.train(was_training)
    report.outputs = [OutputComparison(n, *totals[n]) for n in names]
    if raise_on_failure and not report.passed:
        raise QtoolError(f"ONNX validation failed: {report.failure()}")
    return report
