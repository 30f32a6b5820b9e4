"""Export validation's argmax gate: near-tied decisions are ties, a broken scale still fails."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from qtoolkit.errors import QtoolError
from qtoolkit.export import export_onnx, validate_onnx
from qtoolkit.export.validate import (
    ArgmaxCounts,
    OutputComparison,
    ValidationReport,
    _compare,
    argmax_counts,
)
from qtoolkit.recipe import ExportConfig
from tests.unit.test_export import _calibrated

ATOL = 0.5


def test_flips_between_near_equal_logits_are_ties_not_disagreements():
    ref = np.array([[0.10, 0.11], [0.30, -0.40], [2.0, 0.0], [0.0, 0.2], [1.0, 1.0]])
    got = np.array([[0.11, 0.10], [0.31, -0.41], [0.4, 0.6], [0.6, 0.0], [1.0, 1.0]])
    # row 0: tie that flips; 1: decisive (margin 0.7), agrees; 2: decisive on the torch side
    # (margin 2.0), flips; 3: decisive on the ONNX side only (0.6), flips; 4: exact tie.
    assert argmax_counts(ref, got, ATOL) == ArgmaxCounts(
        agree=2, decisions=5, decisive_agree=1, decisive=3
    )
    # A margin equal to atol is not decisive: "exceeds" is strict.
    assert argmax_counts([[0.5, 0.0]], [[0.0, 0.5]], ATOL).decisive == 0
    # One candidate (a regression head): always decisive and always agreeing.
    assert argmax_counts([[1.0], [2.0]], [[3.0], [-1.0]], ATOL) == ArgmaxCounts(2, 2, 2, 2)


def test_margin_is_top1_minus_top2_over_many_classes():
    ref = np.array([[3.0, 2.8, -5.0, 0.0]])  # margin 0.2 despite a wide spread
    got = np.array([[2.8, 3.0, -5.0, 0.0]])
    assert argmax_counts(ref, got, ATOL) == ArgmaxCounts(0, 1, 0, 0)
    assert argmax_counts(ref, got, 0.1) == ArgmaxCounts(0, 1, 0, 1)


def test_question_answering_and_token_outputs_use_real_tokens_only():
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    # QA (one score per token, argmax per example): the padded position 3 would win if it
    # counted; example 1 has a single real token, so it is decisive and agrees.
    ref = np.array([[0.0, 2.0, 0.1, 9.0], [0.3, 5.0, 5.0, 5.0]], dtype=np.float32)
    got = np.array([[0.0, 1.9, 0.2, 9.5], [0.2, 1.0, 7.0, 0.0]], dtype=np.float32)
    diff, counts = _compare(ref, got, mask, per_token=True, atol=ATOL)
    assert counts == ArgmaxCounts(2, 2, 2, 2) and diff == pytest.approx(0.1, abs=1e-6)
    # Token classification (argmax over labels per real token): 4 real tokens.
    tok_ref = np.zeros((2, 4, 3), dtype=np.float32)
    tok_got = np.zeros((2, 4, 3), dtype=np.float32)
    tok_ref[0, 0] = [1.0, 0.0, 0.0]  # decisive, agrees
    tok_got[0, 0] = [1.0, 0.0, 0.0]
    tok_ref[0, 1] = [0.0, 0.01, 0.0]  # tie that flips
    tok_got[0, 1] = [0.01, 0.0, 0.0]
    tok_ref[0, 2] = [0.0, 1.0, 0.0]  # decisive, flips
    tok_got[0, 2] = [0.0, 0.6, 1.0]
    tok_ref[0, 3] = [0.0, 0.0, 9.0]  # padding: ignored
    _, counts = _compare(tok_ref, tok_got, mask, per_token=True, atol=ATOL)
    # [1, 0] is a real token with all-zero logits on both sides: a tie that agrees.
    assert counts == ArgmaxCounts(agree=2, decisions=4, decisive_agree=1, decisive=2)


def _report(counts: ArgmaxCounts, max_abs_diff: float = 0.01) -> ValidationReport:
    report = ValidationReport(atol=ATOL, min_argmax_agreement=0.95, num_examples=8)
    report.outputs = [OutputComparison("logits", max_abs_diff, counts)]
    return report


def test_the_bar_applies_to_decisive_decisions_and_both_figures_are_reported():
    ties_only = _report(ArgmaxCounts(agree=7, decisions=8, decisive_agree=0, decisive=0))
    assert ties_only.passed and ties_only.decisive_agreement is None
    assert "87.50% of 8 decisions; none has a top-1 margin over 0.5" in ties_only.summary()
    assert "max |diff| alone decides" in ties_only.summary()
    data = ties_only.to_dict()
    assert data["argmax_agreement"] == 0.875 and data["decisive_agreement"] is None
    assert data["outputs"][0]["decisive_decisions"] == 0

    mixed = _report(ArgmaxCounts(agree=7, decisions=8, decisive_agree=5, decisive=5))
    assert mixed.passed
    assert "87.50% of 8 decisions, 100.00% of 5 with a top-1 margin over 0.5" in mixed.summary()

    wrong = _report(ArgmaxCounts(agree=6, decisions=8, decisive_agree=4, decisive=5))
    assert not wrong.passed and wrong.to_dict()["decisive_agreement"] == 0.8
    assert wrong.failure().startswith(
        "output 'logits' argmax agrees with PyTorch on 80.0% of 5 decisions with a top-1 "
        "margin over 0.5 (need 95.0%; 75.0% of all 8;"
    )
    # max |diff| stays the hard check, whatever the decisions say.
    assert "differs from PyTorch by up to 0.6" in _report(ArgmaxCounts(8, 8, 8, 8), 0.6).failure()
    assert "NaN" in _report(ArgmaxCounts(8, 8, 0, 0), float("nan")).failure()


@pytest.fixture(scope="module")
def fresh_head(tiny_bert_dir, tmp_path_factory):
    """A calibrated tiny BERT whose classifier is freshly initialised (std 0.02), exported.

    The head's bias puts the decision boundary among the examples, as a lightly trained head
    does: the logits of every example are close to each other.
    """
    loaded, batches = _calibrated(tiny_bert_dir, lengths=(16, 16, 16, 16))
    head = loaded.model.classifier
    torch.manual_seed(0)
    with torch.no_grad():
        head.weight.normal_(0, 0.02)
        head.bias.zero_()
        logits = torch.cat([loaded.model(**b).logits for b in batches])
        gaps = (logits[:, 0] - logits[:, 1]).sort().values
        # The middle example then has a gap of -0.005, which noise of 0.01 flips.
        head.bias[1] = gaps[len(gaps) // 2] + 0.005
    out = tmp_path_factory.mktemp("fresh") / "model.onnx"
    result = export_onnx(loaded.model, out, ExportConfig(min_argmax_agreement=1.0), batches)
    return loaded.model, batches, result


def test_fresh_head_passes_when_noise_flips_near_tied_logits(fresh_head):
    model, batches, result = fresh_head
    assert result.validation.passed and result.validation.decisive == 0
    # Noise of 0.01 on one logit, the size torch and ORT rounding gave on the real MiniLM
    # (0.0085): it flips every decision whose gap is within 0.01, which the raw rule refused.
    with torch.no_grad():
        before = torch.cat([model(**b).logits for b in batches]).argmax(-1)
        model.classifier.bias[0] += 0.01
        after = torch.cat([model(**b).logits for b in batches]).argmax(-1)
    try:
        flips = int((before != after).sum())
        assert flips >= 1
        report = validate_onnx(result.path, model, batches, ATOL, min_argmax_agreement=1.0)
    finally:
        with torch.no_grad():
            model.classifier.bias[0] -= 0.01
    assert report.argmax_agreement == pytest.approx(1 - flips / report.num_examples)
    assert report.decisive == 0 and report.decisive_agreement is None
    assert report.max_abs_diff == pytest.approx(0.01, abs=1e-3)
    assert "so max |diff| alone decides" in report.summary()


def test_fp16_export_gates_on_the_same_rule(fresh_head, tmp_path):
    model, batches, _ = fresh_head
    cfg = ExportConfig(fp16=True, min_argmax_agreement=1.0)
    report = export_onnx(model, tmp_path / "fp16.onnx", cfg, batches).validation
    # fp16's tolerance (2 x 0.5) is the margin that makes a decision count.
    assert report.passed and report.atol == 1.0 and report.decisive == 0
    assert "none has a top-1 margin over 1" in report.summary()


def _scale_tensor(proto: onnx.ModelProto, name: str) -> onnx.TensorProto:
    """The tensor behind a Q/DQ scale input: an initializer or a Constant node's value."""
    for tensor in proto.graph.initializer:
        if tensor.name == name:
            return tensor
    node = next(n for n in proto.graph.node if n.op_type == "Constant" and n.output[0] == name)
    return next(a.t for a in node.attribute if a.name == "value")


def test_a_broken_quantizer_scale_is_refused(tiny_bert_dir, tmp_path):
    loaded, batches = _calibrated(tiny_bert_dir)
    result = export_onnx(loaded.model, tmp_path / "model.onnx", ExportConfig(), batches)
    assert result.validation.passed
    proto = onnx.load(result.path)
    # The first layer's query input: Q and DQ share the scale, so this is amax x 50 in ONNX only.
    quant = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear")
    assert "layer.0/attention/self/query/_input_quantizer" in quant.name
    tensor = _scale_tensor(proto, quant.input[1])
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 50, tensor.name))
    onnx.save(proto, tmp_path / "broken.onnx")
    with pytest.raises(QtoolError, match=r"ONNX validation failed: output 'logits' differs"):
        validate_onnx(tmp_path / "broken.onnx", loaded.model, batches, ATOL, 0.95)
