"""Float fallback to a budget: a deliberately broken quantizer is found, and only it."""

from __future__ import annotations

import torch

from qtoolkit.models import load_model
from qtoolkit.quant import calibrate, insert_quantizers, iter_quantizers
from qtoolkit.quant.fallback import fallback_units, find_fallback, gemm_census
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
