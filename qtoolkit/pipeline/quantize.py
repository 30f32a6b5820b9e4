"""`qtool quantize`: a fine-tuned checkpoint to the most faithful INT8 model for one runtime.

1. The runtime's preset (qtoolkit.quant.presets) under the user's recipe and overrides decides
   the placement, the SmoothQuant sites and alpha candidates, the calibrator candidates, bias
   correction and the export layout.
2. The calibration text is split: most of it sets the ranges, a held-out slice scores the
   candidates by their output drift from fp32 (label-free). With an eval file the task metric
   on it decides, and drift breaks ties. Statistics are collected once per kind and alpha.
3. Optional float fallback (`--budget`) with autoquant's drift ranking; by default every GEMM
   stays INT8.
4. The chosen model is exported in the runtime's Q/DQ layout (validated against PyTorch) with
   its fp32 baseline, tokenizer and config, and checked on the runtime: agreement with fp32
   (with its interval), accuracy when a labelled test file is given, latency, size. The folder
   (with its quantized checkpoint, report.md/json and a plot) appears whole or not at all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import EXPORT_FILE, Kind, check_output_dir, write_manifest, writing_dir
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["preset_base", "quantize", "quantize_recipe", "run_quantize"]

BIAS_SENTENCES = 128  # calibration sentences that measure the bias corrections


def preset_base(runtime: str) -> dict[str, Any]:
    """The partial recipe a runtime's preset stands for (with `quantize.runtime` set)."""
    from qtoolkit.quant.presets import get_preset

    preset = get_preset(runtime)
    return {**preset.recipe, "quantize": {**preset.recipe.get("quantize", {}), "runtime": runtime}}


def quantize_recipe(
    recipe_path: str | Path | None,
    overrides: list[str] | None = None,
    runtime: str | None = None,
) -> Recipe:
    """The recipe `qtool quantize` runs: the runtime's preset, then the recipe file, then the
    overrides. The runtime is `runtime`, else the file's or overrides' `quantize.runtime`."""
    from qtoolkit.recipe import load_recipe

    overrides = list(overrides or [])
    if runtime is None:
        runtime = load_recipe(recipe_path, overrides).quantize.runtime
    return load_recipe(
        recipe_path, [*overrides, f"quantize.runtime={runtime}"], base=preset_base(runtime)
    )


def quantize(
    model: str | Path,
    calib_file: str | Path,
    runtime: str = "onnxruntime",
    output: str | Path | None = None,
    *,
    eval_file: str | Path | None = None,
    test_file: str | Path | None = None,
    budget: float | None = None,
    recipe: str | Path | None = None,
    overrides: list[str] | None = None,
):
    """`qtool quantize` from Python: returns the `QuantizeOutcome` (its `output_dir` holds
    model.onnx, the report and the checkpoint). `overrides` are `--set` strings."""
    flags = {
        "model.path": str(model),
        "data.calib_file": calib_file,
        "data.eval_file": eval_file,
        "data.test_file": test_file,
        "quantize.budget_points": budget,
        "quantize.output_dir": output,
    }
    sets = list(overrides or [])
    for key, value in flags.items():
        if value is not None:  # a JSON string is YAML too: any path survives as it is
            text = json.dumps(str(value)) if isinstance(value, (str, Path)) else str(value)
            sets.append(f"{key}={text}")
    return run_quantize(quantize_recipe(recipe, sets, runtime))


def _need_labels(recipe: Recipe, task, key: str, tokenizer, config, device: str):
    """An evaluator on `data.<key>`, or None; one line when the file has no usable labels."""
    from qtoolkit.pipeline.common import split_evaluator

    path = getattr(recipe.data, key)
    if path is None:
        return None
    try:
        return split_evaluator(recipe, task, tokenizer, path, config, device=device)
    except QtoolError as exc:
        flag = {"eval_file": "--eval-file", "test_file": "--test-file"}[key]
        raise QtoolError(f"{flag} {path}: {exc} (it needs labels)") from None


def run_quantize(recipe: Recipe):
    from qtoolkit.pipeline.common import (
        batch_forward_loop,
        load_trained_model,
        resolve_device,
        stage_task,
    )
    from qtoolkit.pipeline.holdout import HoldoutScorer, split_calibration
    from qtoolkit.pipeline.quantize_report import QuantizeOutcome
    from qtoolkit.quant import insert_quantizers
    from qtoolkit.quant.candidates import score_candidates
    from qtoolkit.quant.fallback import gemm_census
    from qtoolkit.quant.presets import get_preset

    start = time.perf_counter()
    cfg = recipe.quantize
    preset = get_preset(cfg.runtime)
    data = recipe.data
    if data.calib_file is None:
        raise QtoolError("no calibration text: pass --calib-file (plain sentences are enough)")
    model_cfg = recipe.model
    if model_cfg.path is None:
        raise QtoolError("no model: give a fine-tuned checkpoint folder or package:NAME")
    model_cfg, task_notice = _checkpoint_task(model_cfg)
    out_dir = recipe.stage_dir("quantized")
    inputs = (model_cfg.path, model_cfg.tokenizer, data.calib_file, data.eval_file, data.test_file)
    check_output_dir(out_dir, Kind.ONNX, inputs)  # before any work
    device = resolve_device(recipe.calib.device)
    recipe = recipe.model_copy(update={"model": model_cfg})
    task = stage_task(recipe, model_cfg.task)
    loaded = load_trained_model(model_cfg, recipe.seed)
    model = loaded.model.to(device).eval()
    split = split_calibration(
        model_cfg.task,
        loaded.tokenizer,
        data.calib_file,
        data,
        recipe.calib.num_samples,
        cfg.holdout,
        recipe.calib.batch_size,
    )
    dev = _need_labels(recipe, task, "eval_file", loaded.tokenizer, model.config, device)
    test = _need_labels(recipe, task, "test_file", loaded.tokenizer, model.config, device)
    scorer = HoldoutScorer(split.holdout_batches, task.output_names, device)
    scorer.set_reference(model)
    dev_ref = _dev_reference(dev, model, task)
    insert_quantizers(model, recipe.quant)
    loop = batch_forward_loop(split.range_batches, device)
    # The mean input of a GEMM (all bias correction needs) settles within a few thousand tokens.
    per_batch = recipe.calib.batch_size
    bias_batches = split.range_batches[: max(1, -(-BIAS_SENTENCES // per_batch))]
    bias_loop = batch_forward_loop(bias_batches, device, "bias correction")

    def score(m, candidate) -> dict[str, Any]:
        row = scorer.score(m, f"scoring {candidate.label}")
        if dev is not None:
            row.update(_dev_score(dev, dev_ref, m, task, candidate.label))
        return row

    sq = recipe.quant.smoothquant
    alphas = [None] if sq is None else (sq.alpha if isinstance(sq.alpha, list) else [sq.alpha])
    sites = sq.sites if sq is not None else []
    scored = score_candidates(
        model,
        loop,
        recipe.calib,
        alphas,
        cfg.calibrators,
        sites,
        recipe.calib.bias_correction,
        score,
        bias_loop,
        keep=True,
    )
    ranked = sorted(scored, key=lambda cs: _rank_key(cs[1], cfg.score, dev is not None))
    chosen, chosen_scores = ranked[0]
    model, correction = scored.take(chosen)  # built already: not calibrated again
    census_int8 = gemm_census(model)
    fallback = None
    if cfg.budget_points is not None:
        fp32_value = 1.0 if dev_ref is None else dev_ref["metrics"][task.primary_metric]
        fallback = _fallback(model, recipe, score, chosen, correction, fp32_value, dev, bias_loop)
    # Without fallback the model is the chosen candidate as it was scored: no second scoring.
    final = dict(chosen_scores) if fallback is None else score(model, chosen)
    search_seconds = time.perf_counter() - start

    from qtoolkit.pipeline.quantize_check import check_on_runtime, export_folder, tensorrt_step

    with writing_dir(out_dir, Kind.ONNX, inputs) as tmp:
        exported = export_folder(model, loaded.tokenizer, tmp, recipe, split, fallback)
        check = check_on_runtime(tmp, recipe, preset, test, split)
        trt = tensorrt_step(tmp, out_dir, recipe) if cfg.runtime == "tensorrt" else None
        outcome = QuantizeOutcome(
            output_dir=out_dir,
            recipe=recipe,
            preset=preset,
            split=split,
            candidates=[{**c.to_dict(), "label": c.label, **s} for c, s in scored],
            chosen={**chosen.to_dict(), "label": chosen.label, **chosen_scores},
            final=final,
            census_int8=census_int8,
            census=gemm_census(model),
            fallback=fallback,
            export=exported,
            check=check,
            search_seconds=search_seconds,
            fp32_dev=None if dev_ref is None else dev_ref["metrics"],
            tensorrt=trt,
            notices=[*task_notice, *_notices(split, exported, trt, out_dir)],
        )
        outcome.seconds = time.perf_counter() - start
        outcome.write(tmp)
        write_manifest(
            tmp,
            Kind.ONNX,
            task=model_cfg.task,
            architecture=exported["architecture"],
            source_checkpoint=str(model_cfg.path),
            onnx=EXPORT_FILE,
            runtime=cfg.runtime,
            validation=exported["validation"],
            validation_report=exported["validation_report"],
            fp32_validation_report=exported["fp32_validation_report"],
            tensorrt_violations=exported["tensorrt_violations"],
            quantize=outcome.manifest_fields(),
        )
    return outcome


def _checkpoint_task(model_cfg) -> tuple[Any, list[str]]:
    """The task (and label count) the checkpoint's own head says, when the recipe left the
    default: a front door should not need `--set model.task=...` for a QA or NER model."""
    from qtoolkit.models.loading import resolve_model_ref
    from qtoolkit.runtime.targets import task_from_config

    default = type(model_cfg)()
    folder = resolve_model_ref(model_cfg.path)
    config_file = folder / "config.json"
    if model_cfg.task != default.task or not config_file.is_file():
        return model_cfg, []
    config = json.loads(config_file.read_text(encoding="utf-8"))
    task = task_from_config(type("Config", (), {"architectures": config.get("architectures")}))
    update: dict[str, Any] = {}
    if task is not None and task != model_cfg.task:
        update["task"] = task
    labels = config.get("id2label") or {}
    if (task or model_cfg.task) in ("sequence-classification", "token-classification") and labels:
        update["num_labels"] = len(labels)
    notices = [f"{model_cfg.path} is a {task} model (its config.json)"] if "task" in update else []
    return model_cfg.model_copy(update=update), notices


def _notices(split, exported, trt, out_dir: Path) -> list[str]:
    notes = []
    if split.num_holdout < 64:
        notes.append(
            f"only {split.num_holdout} sentences were held out to choose the candidate; a "
            "longer calibration file makes the choice surer"
        )
    if exported["tensorrt_violations"] and exported["target"] == "tensorrt":
        notes.append(f"TensorRT placement rules: {len(exported['tensorrt_violations'])} issues")
    if trt is not None and not trt.get("built"):
        notes.append(
            f"no NVIDIA GPU with TensorRT here: the engine was not built; "
            f"{out_dir / trt['trtexec_script']} has the trtexec command"
        )
    return notes


def _rank_key(scores: dict[str, Any], drift: str, by_metric: bool) -> tuple:
    if by_metric:
        return (-scores["dev_metric"], scores[drift])
    return (scores[drift],)


def _dev_reference(dev, model, task) -> dict[str, Any] | None:
    if dev is None:
        return None
    outputs: list = []
    metrics, preds, _ = dev.run(model, "fp32 (eval file)", sink=outputs)
    return {"metrics": metrics, "preds": preds, "outputs": outputs}


def _dev_score(dev, ref, model, task, label: str) -> dict[str, Any]:
    from qtoolkit.tasks.evaluation import agreement, output_kl

    outputs: list = []
    metrics, preds, _ = dev.run(model, f"eval file: {label}", sink=outputs)
    return {
        "dev_metric": metrics[task.primary_metric],
        "dev_agreement": agreement(preds, ref["preds"]),
        "dev_kl": output_kl(outputs, ref["outputs"]),
    }


def _fallback(model, recipe: Recipe, score, chosen, correction, fp32_value, dev, loop):
    """Float fallback to the budget: the selection figure is the eval file's metric, else
    agreement with fp32 on the held-out slice; units are ranked by drift (autoquant's rule)."""
    from qtoolkit.quant.bias_correction import correct_biases, fallback_toggle, revert_biases
    from qtoolkit.quant.fallback import Score, fallback_units, find_fallback

    cfg = recipe.quantize
    key, drift = ("dev_metric", "dev_kl") if dev is not None else ("agreement", cfg.score)
    target = fp32_value - cfg.budget_points / 100.0

    def fallback_score(m, label: str) -> Score:
        row = score(m, chosen)
        return Score(row[key], row[drift])

    toggle = fallback_toggle(model, correction) if correction is not None else None
    search = find_fallback(
        model, fallback_units(model), fallback_score, target, cfg.max_fallback, toggle
    )
    if correction is not None and search.chosen:
        # Re-measure the corrections with the final float set (their inputs changed).
        revert_biases(model, correction)
        correct_biases(model, loop)
    return {
        "metric": "agreement (held-out)" if dev is None else "eval-file metric",
        "budget_points": cfg.budget_points,
        "fp32": fp32_value,
        "target": target,
        "start": search.start,
        "met": search.met,
        "float_units": [u.name for u in search.chosen],
        "skip": sorted({q for u in search.chosen for q in u.quantizers}),
        "steps": search.steps,
    }
