"""Float fallback to a budget: a deliberately broken quantizer is found, and only it."""

from __future__ import annotations

import torch

from qtoolkit.models import load_model
from qtoolkit.quant import calibrate, insert_quantizers, iter_quantizers
from qtoolkit.quant.fallback import Score, fallback_units, find_fallback, gemm_census
from qtoolkit.quant.smoothquant import quantizers_off
from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig

BROKEN = "bert.encoder.layer.1.intermediate.dense._input_quantizer"


def _batches(n=2, rows=16, length=12):
    gen = torch.Generator().manual_seed(3)
    return [{"input_ids": torch.randint(5, 120, (rows, length), generator=gen)} for _ in range(n)]


def _tiny_calibrated(path):
    model = load_model(
        ModelConfig(
            path=str(path),
            random_init=True,
            num_labels=4,
            config_overrides={"initializer_range": 0.2, "vocab_size": 120, "num_labels": 4},
        )
    ).model.eval()
    insert_quantizers(model, QuantConfig())
    batches = _batches()
    calibrate(model, lambda m: [m(**b) for b in batches], CalibConfig(method="max"))
    return model, batches


def _agreement_score(model, batches):
    with torch.no_grad(), quantizers_off(model):
        ref = torch.cat([model(**b).logits.argmax(-1) for b in batches])

    def score(m, label):
        with torch.no_grad():
            got = torch.cat([m(**b).logits.argmax(-1) for b in batches])
        return float((got == ref).float().mean())

    return score


def test_fallback_finds_the_broken_quantizer(tiny_bert_dir):
    model, batches = _tiny_calibrated(tiny_bert_dir)
    score = _agreement_score(model, batches)
    healthy = score(model, "healthy")
    quantizers = dict(iter_quantizers(model))
    quantizers[BROKEN]._amax.fill_(1e-3)  # clips every GELU input: a broken calibration
    broken = score(model, "broken")
    assert broken < healthy - 0.2, (healthy, broken)

    units = fallback_units(model)
    census = gemm_census(model)
    assert census["int8"] == census["gemms"] == sum(1 for u in units if u.gemms)
    search = find_fallback(model, units, score, target=healthy - 0.05)
    assert search.met
    assert [u.name for u in search.chosen] == ["bert.encoder.layer.1.intermediate.dense"]
    assert search.ranking[0]["unit"].name == "bert.encoder.layer.1.intermediate.dense"
    assert quantizers[BROKEN]._disabled and score(model, "after") >= healthy - 0.05
    assert gemm_census(model)["int8"] == census["gemms"] - 1


def test_fallback_within_budget_changes_nothing(tiny_bert_dir):
    model, batches = _tiny_calibrated(tiny_bert_dir)
    score = _agreement_score(model, batches)
    search = find_fallback(model, fallback_units(model), score, target=0.0)
    assert search.met and search.chosen == [] and search.ranking == []
    assert all(not q._disabled for _, q in iter_quantizers(model))


def test_unreachable_target_keeps_the_best_step_only(tiny_bert_dir):
    model, batches = _tiny_calibrated(tiny_bert_dir)
    score = _agreement_score(model, batches)
    search = find_fallback(model, fallback_units(model), score, target=1.01, max_fallback=3)
    assert not search.met and len(search.steps) <= 4
    best = max(search.steps, key=lambda s: s["score"])
    assert len(search.chosen) <= 3
    float_units = {u.name for u in fallback_units(model, "gemm")}
    assert all(u.name not in float_units for u in search.chosen)
    assert score(model, "final") >= best["score"] - 1e-9 or search.chosen == []


def test_drift_ranks_units_whose_metric_gain_only_shows_together(tiny_bert_dir):
    # Two units that each flip no prediction alone but meet the target together: ranking by
    # the metric finds neither, ranking by output drift finds both (and nothing else).
    model, _ = _tiny_calibrated(tiny_bert_dir)
    units = fallback_units(model)
    a, b = units[3], units[7]
    quantizers = dict(iter_quantizers(model))

    def is_float(unit):
        return all(quantizers[q]._disabled for q in unit.quantizers)

    def value():
        return 1.0 if is_float(a) and is_float(b) else 0.5

    def with_drift(m, label):
        return Score(value(), 1.0 - 0.4 * is_float(a) - 0.3 * is_float(b))

    by_metric = find_fallback(model, units, lambda m, label: value(), target=0.9)
    assert not by_metric.met and by_metric.chosen == []
    search = find_fallback(model, units, with_drift, target=0.9)
    assert search.met
    assert [u.name for u in search.chosen] == [a.name, b.name]
    assert [r["unit"].name for r in search.ranking[:2]] == [a.name, b.name]
    assert abs(search.steps[-1]["drift"] - 0.3) < 1e-9
    assert is_float(a) and is_float(b) and sum(is_float(u) for u in units) == 2


def test_output_drift_is_relative_squared_error():
    import numpy as np

    from qtoolkit.tasks.evaluation import output_drift

    ref = [{"logits": np.array([[1.0, -1.0]])}, {"logits": np.array([[2.0, 0.0]])}]
    out = [{"logits": np.array([[1.0, -0.5]])}, {"logits": np.array([[2.0, 1.0]])}]
    assert output_drift(ref, ref) == 0.0
    assert abs(output_drift(out, ref) - (0.25 + 1.0) / (1 + 1 + 4)) < 1e-12
