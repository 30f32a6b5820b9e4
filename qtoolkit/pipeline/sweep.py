"""PTQ sweep: every calibration method on one model, chosen on the dev split and reported
against fp32 on the test split, with paired bootstrap intervals.

Histogram statistics are collected once and every histogram method (percentile, mse, entropy)
is derived from them; max needs its own pass. The best method's checkpoint is saved as the
calibrated stage output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import Kind, check_output_dir, write_manifest, writing_dir
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
    result: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Any:
        """What `qtool ptq-sweep` prints: the results table and where the best model went."""
        from rich.console import Group
        from rich.markdown import Markdown

        return Group(
            Markdown(sweep_markdown(self.rows, self.primary_metric, self.result)),
            f"saved {self.best_method} ({self.result.get('selection', '')}): "
            f"{self.calibrated_dir}; "
            f"table {self.report_dir / 'results.md'}",
        )


def run_ptq_sweep(recipe: Recipe, methods: list[str]) -> SweepOutcome:
    import torch

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.fsutil import write_json
    from qtoolkit.pipeline.common import (
        batch_forward_loop,
        load_trained_model,
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
    from qtoolkit.tasks.inputs import model_input_batches

    if not methods:
        raise QtoolError(f"no calibration methods given: use {', '.join(CALIB_METHODS)}")
    specs = [get_calibrator(m) for m in methods]
    data_cfg = recipe.data
    if data_cfg.calib_file is None or data_cfg.test_file is None:
        raise QtoolError("a PTQ sweep needs data.calib_file and data.test_file")
    model_cfg, notices = quant_source(recipe)
    calibrated_dir = recipe.stage_dir("calibrated")
    report_dir = recipe.output_dir / "ptq_sweep"
    # Before any work: the outputs must be replaceable and hold none of the inputs.
    inputs = (model_cfg.path, model_cfg.tokenizer, data_cfg.calib_file, data_cfg.test_file)
    check_output_dir(calibrated_dir, Kind.QUANTIZED, inputs)
    check_output_dir(report_dir, Kind.REPORT, inputs)
    device = resolve_device(recipe.calib.device)
    task = stage_task(recipe, model_cfg.task)
    loaded = load_trained_model(model_cfg, recipe.seed)
    model = loaded.model.to(device)
    # The method is chosen on the dev split and every method is reported on the test split,
    # so the reported figures are not the ones the choice was made on.
    dev = None
    if data_cfg.eval_file is not None:
        dev = split_evaluator(
            recipe, task, loaded.tokenizer, data_cfg.eval_file, model.config, device=device
        )
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
    metric = task.primary_metric
    fp32 = _Scored.of(model, "fp32", dev, test)
    rows: list[dict[str, Any]] = [fp32.row("fp32", None, 0.0, None)]
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
        scored = _Scored.of(model, spec.label(cfg), dev, test)
        rows.append(scored.row(spec.label(cfg), method, weights_s + collect_s + amax_s, fp32))
    if dev is not None:
        best = max(rows[1:], key=lambda r: (r["dev"][metric], r["dev_agreement"]))
        selected_by = (
            f"best {metric} on {data_cfg.eval_file} (dev); reported on {data_cfg.test_file}"
        )
        saved_key = best["key"]
    else:
        best = None
        saved_key = recipe.calib.method
        selected_by = f"nothing selected (no data.eval_file): saved calib.method {saved_key}"
        notices.append(
            "no data.eval_file: the sweep selects nothing (choosing on the test split would "
            f"report the figure it chose on); the saved model uses calib.method {saved_key}"
        )
    for row in rows:
        row["selected"] = best is not None and row is best
    # Re-derive the saved method's amax and save that model.
    best_cfg = recipe.calib.model_copy(update={"method": saved_key})
    if get_calibrator(saved_key).statistics != collected:
        release_statistics(model)
        collect_statistics(model, batch_forward_loop(batches, device, "collect (best)"), best_cfg)
    load_amax(model, best_cfg)
    release_statistics(model)
    save_quantized(
        model,
        loaded.tokenizer,
        calibrated_dir,
        recipe.quant,
        inputs=inputs,
        info={
            "stage": "calibrated",
            "source_model": model_cfg.path,
            "calib": best_cfg.model_dump(mode="json", exclude={"output_dir"}),
            "calib_file": str(data_cfg.calib_file),
            "num_samples": num_calib,
            "selected_by": f"ptq sweep: {selected_by}",
        },
    )
    saved_label = best["method"] if best else get_calibrator(saved_key).label(best_cfg)
    result = {
        "format": 2,
        "model": model_cfg.path,
        "task": model_cfg.task,
        "selected_on": None if dev is None else str(data_cfg.eval_file),
        "reported_on": str(data_cfg.test_file),
        "selection": selected_by,
        "num_dev": None if dev is None else dev.num_examples,
        "test_file": str(data_cfg.test_file),
        "num_test": test.num_examples,
        "num_calib": num_calib,
        "quant": recipe.quant.model_dump(mode="json"),
        "primary_metric": metric,
        "best_method": best["method"] if best else None,
        "saved_method": saved_label,
        "interval": "paired bootstrap over test examples, 2000 resamples, 95%",
        "machine": machine_info(torch.get_num_threads()),
        "rows": rows,
    }
    with writing_dir(report_dir, Kind.REPORT, inputs) as tmp:
        write_json(tmp / "results.json", result)
        (tmp / "results.md").write_text(sweep_markdown(rows, metric, result))
        write_manifest(tmp, Kind.REPORT, report="ptq-sweep")
    return SweepOutcome(rows, saved_label, calibrated_dir, report_dir, metric, notices, result)


@dataclass
class _Scored:
    """One model state scored on dev (optional) and test, predictions kept for comparisons."""

    dev_metrics: dict[str, float] | None
    dev_preds: Any
    test_metrics: dict[str, float]
    test_preds: Any
    eval_s: float
    dev: Any
    test: Any

    @classmethod
    def of(cls, model, label: str, dev, test) -> _Scored:
        dev_metrics = dev_preds = None
        dev_s = 0.0
        if dev is not None:
            dev_metrics, dev_preds, dev_s = dev.run(model, f"{label} (dev)")
        metrics, preds, test_s = test.run(model, f"{label} (test)")
        return cls(dev_metrics, dev_preds, metrics, preds, dev_s + test_s, dev, test)

    def row(self, label: str, key: str | None, calib_s: float, ref: _Scored | None) -> dict:
        from qtoolkit.tasks.compare import compare_predictions
        from qtoolkit.tasks.evaluation import agreement

        metric = self.test.task.primary_metric
        row: dict[str, Any] = {"method": label, "key": key, **self.test_metrics}
        row["dev"] = self.dev_metrics
        if ref is None:
            row.update(agreement=1.0, delta_points=None, delta=None, tie=None)
            row["dev_agreement"] = 1.0
        else:
            row.update(
                compare_predictions(
                    self.test.task,
                    self.test.data,
                    self.test_preds,
                    ref.test_preds,
                    self.test_metrics[metric] - ref.test_metrics[metric],
                )
            )
            row["dev_agreement"] = (
                agreement(self.dev_preds, ref.dev_preds) if self.dev is not None else None
            )
        row.update(calib_s=calib_s, eval_s=self.eval_s)
        return row


def sweep_markdown(
    rows: list[dict[str, Any]], metric: str, result: dict[str, Any] | None = None
) -> str:
    """The sweep table: dev metric (what chose), test metrics (what is reported), the test
    difference from fp32 and the agreement with fp32, each with its 95% interval."""
    from qtoolkit.tasks.compare import agreement_cell, delta_cell

    result = result or {}
    extra = [k for k in ("f1", "mcc", "exact_match") if k in rows[0] and k != metric]
    has_dev = rows[0].get("dev") is not None
    head = [
        "method",
        *([f"dev {metric}"] if has_dev else []),
        f"test {metric}",
        *extra,
        "Δ vs fp32 (points, 95% CI)",
        "agreement with fp32 (95% CI)",
        "calib s",
        "eval s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"**{r['method']}** (selected)" if r.get("selected") else r["method"]
        cells = [
            name,
            *([f"{r['dev'][metric]:.4f}"] if has_dev else []),
            f"{r[metric]:.4f}",
            *[f"{r[k]:.4f}" for k in extra],
            delta_cell(r),
            agreement_cell(r) if r["method"] != "fp32" else "",
            f"{r['calib_s']:.1f}",
            f"{r['eval_s']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if "selection" in result:
        lines += [
            "",
            f"Selection: {result['selection']}. Test: {result['num_test']} examples"
            + (f"; dev: {result['num_dev']}" if result.get("num_dev") else "")
            + f". Intervals: {result['interval']}; 'tie' when the interval contains 0.",
        ]
    return "\n".join(lines) + "\n"
