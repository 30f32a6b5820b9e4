"""The autoquant stage: PTQ that stays within a budget of fp32, chosen on dev, reported on test.

1. Calibrator (and SmoothQuant alpha, when `quant.smoothquant.alpha` is a list) chosen on
   `data.eval_file`; bias correction after it when `calib.bias_correction` is set.
2. If the dev score is short of fp32 minus the budget, every fallback unit (a GEMM with its
   quantizers, or a residual add's; see qtoolkit.quant.fallback) is put alone in float on dev
   and ranked by how close the outputs come to fp32's (`output_drift`), and the k best go to
   float for k = 1, 2, ... until the budget is met.
3. The chosen model is scored once on `data.test_file` (never used for a choice), with the
   paired-bootstrap interval of its difference to fp32 and of its agreement with fp32, and
   saved as a quantized checkpoint; optionally each fallback step is timed on ONNX Runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe
from qtoolkit.recipe_ptq import AutoQuantConfig

__all__ = ["run_autoquant", "auto_settings"]


def auto_settings(
    recipe: Recipe, budget: float | None = None, metric: str | None = None
) -> AutoQuantConfig:
    """The recipe's `quant.auto` (or defaults) with the CLI's --budget / --metric on top."""
    from pydantic import ValidationError

    auto = recipe.quant.auto or AutoQuantConfig()
    update = {k: v for k, v in (("budget_points", budget), ("metric", metric)) if v is not None}
    try:
        return auto.model_validate({**auto.model_dump(), **update})
    except ValidationError as err:  # the same rules as the recipe's quant.auto
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise QtoolError(f"quant.auto.{key}: {first['msg']}") from None


@dataclass
class _Split:
    name: str
    evaluator: Any
    fp32_metrics: dict[str, float]
    fp32_preds: Any
    fp32_outputs: list


def _as_list(preds: Any) -> list:
    return [preds[k] for k in sorted(preds)] if isinstance(preds, dict) else list(preds)


def run_autoquant(recipe: Recipe, budget: float | None = None, metric: str | None = None):
    from qtoolkit.data import read_data_examples, tokenize_batches
    from qtoolkit.pipeline.autoquant_report import (
        AutoquantOutcome,
        check_outputs,
        output_dirs,
        test_figures,
        write_report,
    )
    from qtoolkit.pipeline.common import (
        batch_forward_loop,
        load_trained_model,
        quant_source,
        resolve_device,
        split_evaluator,
        stage_task,
    )
    from qtoolkit.quant import insert_quantizers, save_quantized
    from qtoolkit.quant.bias_correction import correct_biases, fallback_toggle, revert_biases
    from qtoolkit.quant.calib.registry import CALIB_METHODS
    from qtoolkit.quant.candidates import Candidate, build_candidate, score_candidates
    from qtoolkit.quant.fallback import Score, fallback_units, find_fallback, gemm_census
    from qtoolkit.tasks.evaluation import agreement, output_drift

    auto = auto_settings(recipe, budget, metric)
    data = recipe.data
    missing = [k for k in ("eval_file", "test_file", "calib_file") if getattr(data, k) is None]
    if missing:
        raise QtoolError(f"autoquant needs data.{missing[0]} (dev selects, test reports)")
    model_cfg, notices = quant_source(recipe)
    inputs = (model_cfg.path, model_cfg.tokenizer, data.calib_file, data.eval_file, data.test_file)
    check_outputs(recipe, inputs)  # before the search: it may take hours
    device = resolve_device(recipe.calib.device)
    task = stage_task(recipe, model_cfg.task)
    loaded = load_trained_model(model_cfg, recipe.seed)
    select_metric = auto.metric or task.primary_metric
    model = loaded.model.to(device).eval()
    splits = {}
    for name, path in (("dev", data.eval_file), ("test", data.test_file)):
        ev = split_evaluator(recipe, task, loaded.tokenizer, path, model.config, device=device)
        outputs: list = []
        metrics, preds, _ = ev.run(model, f"fp32 ({name})", sink=outputs if name == "dev" else None)
        splits[name] = _Split(name, ev, metrics, preds, outputs)
    if select_metric != "agreement" and select_metric not in splits["dev"].fp32_metrics:
        known = ", ".join([*splits["dev"].fp32_metrics, "agreement"])
        raise QtoolError(f"quant.auto.metric: unknown '{select_metric}' (known: {known})")
    dev = splits["dev"]

    def dev_score(m, label: str) -> tuple[float, float, dict]:
        outputs: list = []
        metrics, preds, _ = dev.evaluator.run(m, f"dev: {label}", sink=outputs)
        agree = agreement(preds, dev.fp32_preds)
        value = agree if select_metric == "agreement" else metrics[select_metric]
        metrics["drift"] = output_drift(outputs, dev.fp32_outputs)
        return value, agree, metrics

    fp32_score = 1.0 if select_metric == "agreement" else dev.fp32_metrics[select_metric]
    target = fp32_score - auto.budget_points / 100.0
    calib_ex = read_data_examples(data.calib_file, data, recipe.calib.num_samples)
    batches = tokenize_batches(loaded.tokenizer, calib_ex, recipe.calib.batch_size, data.max_length)
    loop = batch_forward_loop(batches, device)
    insert_quantizers(model, recipe.quant)
    start = time.perf_counter()
    # 1. calibrator x alpha, on dev; each candidate scored with its own bias correction.
    methods = auto.methods or list(CALIB_METHODS)
    sq = recipe.quant.smoothquant
    alphas = [None] if sq is None else (sq.alpha if isinstance(sq.alpha, list) else [sq.alpha])
    sites = sq.sites if sq is not None else []

    def candidate_score(m, candidate: Candidate) -> dict:
        value, agree, metrics = dev_score(m, f"{candidate.method}, alpha {candidate.alpha}")
        return {"score": value, "agreement": agree, **metrics}

    scored = score_candidates(
        model,
        loop,
        recipe.calib,
        alphas,
        methods,
        sites,
        recipe.calib.bias_correction,
        candidate_score,
    )
    candidates = [{"method": c.method, "alpha": c.alpha, **s} for c, s in scored]
    best = max(candidates, key=lambda r: (r["score"], r["agreement"], -r["drift"]))
    # Rebuild the chosen one (cheaper in memory than keeping every candidate).
    cfg = recipe.calib.model_copy(update={"method": best["method"]})
    build_candidate(model, loop, recipe.calib, sites, Candidate(best["method"], best["alpha"]))
    correction = None
    toggle = None
    if recipe.calib.bias_correction:
        correction = correct_biases(model, loop)
        toggle = fallback_toggle(model, correction)

    # 2. fallback, on dev.
    units = fallback_units(model, auto.granularity)
    census_all_int8 = gemm_census(model)

    def fallback_score(m, label: str) -> Score:
        value, _, metrics = dev_score(m, label)
        return Score(value, metrics["drift"])

    search = find_fallback(model, units, fallback_score, target, auto.max_fallback, toggle)
    test = splits["test"]
    before_fallback = None
    if search.chosen:
        # Reported only (nothing is chosen from it): test figures without the fallback.
        from qtoolkit.quant.fallback import set_float

        set_float(model, search.chosen, False)
        if toggle is not None:
            toggle(search.chosen, False)
        m, p, _ = test.evaluator.run(model, "test: before fallback")
        before_fallback = test_figures(task, test, m, _as_list(p), _as_list(test.fp32_preds))
        set_float(model, search.chosen, True)
        if toggle is not None:
            toggle(search.chosen, True)
    if correction is not None and search.chosen:
        # Re-measure the corrections with the final float set (their inputs changed).
        revert_biases(model, correction)
        correction = correct_biases(model, loop)
    final_dev = dev_score(model, "final")
    seconds = time.perf_counter() - start
    # 3. test, once.
    test_metrics, test_preds, _ = test.evaluator.run(model, "test: final")
    figures = test_figures(
        task, test, test_metrics, _as_list(test_preds), _as_list(test.fp32_preds)
    )
    out_dir, report_dir = output_dirs(recipe)
    skip = sorted({q for u in search.chosen for q in u.quantizers})
    quant_cfg = recipe.quant.model_copy(update={"skip": [*recipe.quant.skip, *skip]})
    selection = {
        "selected_on": str(data.eval_file),
        "metric": select_metric,
        "budget_points": auto.budget_points,
        "calibrator": best["method"],
        "smoothquant_alpha": best["alpha"],
        "bias_correction": recipe.calib.bias_correction,
        "float_units": [u.name for u in search.chosen],
    }
    save_quantized(
        model,
        loaded.tokenizer,
        out_dir,
        quant_cfg,
        inputs=inputs,
        info={
            "stage": "autoquant",
            "source_model": model_cfg.path,
            "calib": cfg.model_dump(mode="json", exclude={"output_dir"}),
            "calib_file": str(data.calib_file),
            "num_samples": len(calib_ex),
            "autoquant": selection,
        },
    )
    outcome = AutoquantOutcome(
        checkpoint=out_dir,
        report_dir=report_dir,
        metric=select_metric,
        budget_points=auto.budget_points,
        fp32_dev=fp32_score,
        target=target,
        candidates=candidates,
        best=best,
        search=search,
        final_dev={"score": final_dev[0], "agreement": final_dev[1], **final_dev[2]},
        census_all_int8=census_all_int8,
        census=gemm_census(model),
        test=figures,
        test_before_fallback=before_fallback,
        fp32_test=splits["test"].fp32_metrics,
        seconds=seconds,
        notices=notices,
    )
    if auto.latency:
        from qtoolkit.pipeline.autoquant_report import fallback_latency

        outcome.latency = fallback_latency(model, search, recipe, batches, toggle)
    write_report(outcome, recipe, inputs)
    return outcome
