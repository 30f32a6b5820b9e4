"""PTQ sweep: every calibration method on one model, evaluated against fp32 on the test split.

Histogram statistics are collected once and every histogram method (percentile, mse, entropy)
is derived from them; max needs its own pass. The best method's checkpoint is saved as the
calibrated stage output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["SweepOutcome", "run_ptq_sweep", "sweep_markdown"]


@dataclass
class SweepOutcome:
    rows: list[dict[str, Any]]
    best_method: str
    calibrated_dir: Path
    report_dir: Path
    primary_metric: str
    notices: list[str] = field(default_factory=list)

    def summary(self) -> Any:
        """What `qtool ptq-sweep` prints: the results table and where the best model went."""
        from rich.console import Group
        from rich.markdown import Markdown

        return Group(
            Markdown(sweep_markdown(self.rows, self.primary_metric)),
            f"best: {self.best_method}; saved {self.calibrated_dir}; "
            f"table {self.report_dir / 'results.md'}",
        )


def run_ptq_sweep(recipe: Recipe, methods: list[str]) -> SweepOutcome:
    from qtoolkit.fsutil import write_json
    from qtoolkit.models import load_model
    from qtoolkit.pipeline.common import (
        batch_forward_loop,
        quant_source,
        resolve_device,
        split_evaluator,
        stage_task,
    )
    from qtoolkit.quant import insert_quantizers, save_quantized
    from qtoolkit.quant.calib.registry import CALIB_METHODS, get_calibrator
    from qtoolkit.quant.calibrate import (
        calibrate_weights,
        collect_statistics,
        load_amax,
        release_statistics,
    )
    from qtoolkit.tasks.evaluation import agreement
    from qtoolkit.tasks.inputs import model_input_batches

    if not methods:
        raise QtoolError(f"no calibration methods given: use {', '.join(CALIB_METHODS)}")
    specs = [get_calibrator(m) for m in methods]
    data_cfg = recipe.data
    if data_cfg.calib_file is None or data_cfg.test_file is None:
        raise QtoolError("a PTQ sweep needs data.calib_file and data.test_file")
    model_cfg, notices = quant_source(recipe)
    device = resolve_device(recipe.calib.device)
    task = stage_task(recipe, model_cfg.task)
    loaded = load_model(model_cfg, seed=recipe.seed)
    if loaded.newly_initialized:
        raise QtoolError(
            f"{model_cfg.path} has no trained {model_cfg.task} head: run qtool finetune first"
        )
    model = loaded.model.to(device)
    test = split_evaluator(
        recipe, task, loaded.tokenizer, data_cfg.test_file, model.config, device=device
    )
    batches, num_calib = model_input_batches(
        model_cfg.task,
        loaded.tokenizer,
        data_cfg.calib_file,
        data_cfg,
        recipe.calib.num_samples,
        recipe.calib.batch_size,
    )

    def run_eval(description: str):
        return test.run(model, description)

    fp32_metrics, fp32_preds, fp32_s = run_eval("fp32")
    rows: list[dict[str, Any]] = [
        {"method": "fp32", **fp32_metrics, "agreement": 1.0, "calib_s": 0.0, "eval_s": fp32_s}
    ]
    insert_quantizers(model, recipe.quant)
    weights_s = time.perf_counter()
    calibrate_weights(model)
    weights_s = time.perf_counter() - weights_s
    collected: str | None = None
    collect_s = 0.0
    # Methods sharing statistics run one after another, so each kind is collected once.
    for spec in sorted(specs, key=lambda s: s.statistics != "max"):
        method = spec.name
        cfg = recipe.calib.model_copy(update={"method": method})
        kind = spec.statistics
        if collected != kind:
            release_statistics(model)
            collect_s = collect_statistics(
                model, batch_forward_loop(batches, device, f"collect ({kind})"), cfg
            )
            collected = kind
        amax_s = load_amax(model, cfg).seconds
        metrics, preds, eval_s = run_eval(spec.label(cfg))
        rows.append(
            {
                "method": spec.label(cfg),
                "key": method,
                **metrics,
                "agreement": agreement(preds, fp32_preds),
                "calib_s": weights_s + collect_s + amax_s,
                "eval_s": eval_s,
            }
        )
    metric = task.primary_metric
    best = max(rows[1:], key=lambda r: (r[metric], r["agreement"]))
    for row in rows[1:]:
        row["delta_points"] = 100.0 * (row[metric] - fp32_metrics[metric])
    # Re-derive the best method's amax and save that model.
    best_cfg = recipe.calib.model_copy(update={"method": best["key"]})
    if get_calibrator(best["key"]).statistics != collected:
        release_statistics(model)
        collect_statistics(model, batch_forward_loop(batches, device, "collect (best)"), best_cfg)
    load_amax(model, best_cfg)
    release_statistics(model)
    calibrated_dir = recipe.stage_dir("calibrated")
    save_quantized(
        model,
        loaded.tokenizer,
        calibrated_dir,
        recipe.quant,
        info={
            "stage": "calibrated",
            "source_model": model_cfg.path,
            "calib": best_cfg.model_dump(mode="json", exclude={"output_dir"}),
            "calib_file": str(data_cfg.calib_file),
            "num_samples": num_calib,
            "selected_by": f"ptq sweep on {data_cfg.test_file} ({metric})",
        },
    )
    report_dir = recipe.output_dir / "ptq_sweep"
    result = {
        "model": model_cfg.path,
        "task": model_cfg.task,
        "test_file": str(data_cfg.test_file),
        "num_test": test.num_examples,
        "num_calib": num_calib,
        "quant": recipe.quant.model_dump(mode="json"),
        "primary_metric": metric,
        "best_method": best["method"],
        "rows": rows,
    }
    write_json(report_dir / "results.json", result)
    report_dir.joinpath("results.md").write_text(sweep_markdown(rows, metric))
    return SweepOutcome(rows, best["method"], calibrated_dir, report_dir, metric, notices)


def sweep_markdown(rows: list[dict[str, Any]], metric: str) -> str:
    extra = [k for k in ("f1", "mcc", "exact_match") if k in rows[0] and k != metric]
    head = [
        "method",
        metric,
        *extra,
        "Δ vs fp32 (points)",
        "agreement with fp32",
        "calib s",
        "eval s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        delta = "" if r["method"] == "fp32" else f"{r['delta_points']:+.2f}"
        cells = [
            r["method"],
            f"{r[metric]:.4f}",
            *[f"{r[k]:.4f}" for k in extra],
            delta,
            f"{r['agreement']:.2%}",
            f"{r['calib_s']:.1f}",
            f"{r['eval_s']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
