"""What `qtool autoquant` reports: the choice made on dev, the test figures with intervals,
the GEMMs left in INT8 and the latency each fallback step costs on ONNX Runtime."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AutoquantOutcome",
    "autoquant_markdown",
    "check_outputs",
    "fallback_latency",
    "output_dirs",
    "test_figures",
    "write_report",
]

LATENCY_SHAPES = ((1, 128), (8, 128))


@dataclass
class AutoquantOutcome:
    checkpoint: Path
    report_dir: Path
    metric: str
    budget_points: float
    fp32_dev: float
    target: float
    candidates: list[dict[str, Any]]
    best: dict[str, Any]
    search: Any  # qtoolkit.quant.fallback.FallbackSearch
    final_dev: dict[str, Any]
    census_all_int8: dict[str, int]
    census: dict[str, int]
    test: dict[str, Any]
    fp32_test: dict[str, float]
    seconds: float
    test_before_fallback: dict[str, Any] | None = None
    latency: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        s = self.search
        return {
            "checkpoint": str(self.checkpoint),
            "metric": self.metric,
            "budget_points": self.budget_points,
            "dev": {
                "fp32": self.fp32_dev,
                "target": self.target,
                "candidates": self.candidates,
                "chosen": {k: self.best[k] for k in ("method", "alpha", "score", "agreement")},
                "start": s.start,
                "start_drift": s.start_drift,
                "ranking": [
                    {"unit": r["unit"].name, "score": r["score"], "drift": r.get("drift")}
                    for r in s.ranking
                ],
                "steps": s.steps,
                "met": s.met,
                "final": self.final_dev,
            },
            "float_units": [u.to_dict() for u in s.chosen],
            "gemms": self.census,
            "gemms_all_int8": self.census_all_int8,
            "test": self.test,
            "test_before_fallback": self.test_before_fallback,
            "fp32_test": self.fp32_test,
            "latency_ms": self.latency,
            "selection_seconds": round(self.seconds, 1),
        }

    def summary(self) -> Any:
        from rich.console import Group
        from rich.markdown import Markdown

        from qtoolkit.ui import note

        lines: list[Any] = [Markdown(autoquant_markdown(self.to_json()))]
        if not self.search.met:
            lines.append(
                note(
                    f"dev {self.metric} did not reach fp32 - {self.budget_points} points; kept "
                    "the best step found"
                )
            )
        lines.append(f"wrote {self.checkpoint}; report {self.report_dir / 'results.md'}")
        return Group(*lines)


def test_figures(task, split, metrics: dict, preds: list, fp32_preds: list) -> dict[str, Any]:
    """Test metrics, the primary metric's difference to fp32 and agreement with fp32, each with
    a 95% paired-bootstrap interval. Per-example correctness (for the difference) exists for
    classification; other tasks get the agreement interval only."""
    from qtoolkit.tasks.intervals import agreement_interval, paired_bootstrap

    out: dict[str, Any] = {"num_examples": len(preds), "metrics": metrics}
    out["agreement"] = agreement_interval(preds, fp32_preds).to_dict()
    labels = list(getattr(split.evaluator.data, "labels", []) or [])
    if task.primary_metric == "accuracy" and len(labels) == len(preds):
        ok = [float(p == y) for p, y in zip(preds, labels, strict=True)]
        ok_fp32 = [float(p == y) for p, y in zip(fp32_preds, labels, strict=True)]
        out["accuracy"] = paired_bootstrap(ok, [0.0] * len(ok)).to_dict()
        out["fp32_accuracy"] = paired_bootstrap(ok_fp32, [0.0] * len(ok)).to_dict()
        out["delta_vs_fp32"] = paired_bootstrap(ok, ok_fp32).to_dict()
    return out


def _pct(iv: dict | None) -> str:
    if not iv:
        return "-"
    return f"{100 * iv['value']:.2f} [{100 * iv['low']:.2f}, {100 * iv['high']:.2f}]"


def autoquant_markdown(report: dict[str, Any]) -> str:
    """The result table of one autoquant run (also what the README table is built from)."""
    t, dev, g = report["test"], report["dev"], report["gemms"]
    chosen = dev["chosen"]
    alpha = "off" if chosen["alpha"] is None else f"alpha {chosen['alpha']}"
    lines = [
        f"Chosen on dev ({report['metric']}, budget {report['budget_points']} points): "
        f"calibrator **{chosen['method']}**, SmoothQuant {alpha}, "
        f"{len(report['float_units'])} fallback units in float; "
        f"{g['int8']}/{g['gemms']} GEMMs in INT8 ({g['int8'] / max(g['gemms'], 1):.1%}).",
        "",
        "| test split | value [95% interval] |",
        "|---|---|",
        f"| fp32 accuracy | {_pct(t.get('fp32_accuracy'))} |",
        f"| INT8 accuracy | {_pct(t.get('accuracy'))} |",
        f"| Δ vs fp32 (points) | {_pct(t.get('delta_vs_fp32'))} |",
        f"| agreement with fp32 | {_pct(t['agreement'])} |",
        f"| flipped predictions | {100 - 100 * t['agreement']['value']:.2f}% |",
    ]
    if report["float_units"]:
        lines += ["", "Left in float (dev rank order): " + ", ".join(
            f"`{u['name']}`" for u in report["float_units"])]  # fmt: skip
    if report.get("latency_ms"):
        head = [f"{b}x{s} ms" for b, s in LATENCY_SHAPES]
        lines += ["", "| ORT step | units in float | " + " | ".join(head) + " |",
                  "|---|---|" + "---|" * len(head)]  # fmt: skip
        for row in report["latency_ms"]:
            cells = [f"{row['ms'].get(f'{b}x{s}', float('nan')):.1f}" for b, s in LATENCY_SHAPES]
            lines.append(f"| {row['label']} | {row['k']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def output_dirs(recipe) -> tuple[Path, Path]:
    """Where autoquant writes: the quantized checkpoint and the report folder."""
    return recipe.output_dir / "autoquant", recipe.output_dir / "autoquant_report"


def check_outputs(recipe, inputs) -> None:
    """Refuse, before the search, outputs that would replace something (see qtoolkit.artifacts):
    the checkpoint, and the report folder (a user's own results.md in it included)."""
    from qtoolkit.artifacts import Kind, check_output_dir

    checkpoint, report = output_dirs(recipe)
    check_output_dir(checkpoint, Kind.QUANTIZED, inputs)
    check_output_dir(report, Kind.REPORT, inputs)


def write_report(outcome: AutoquantOutcome, recipe, inputs=()) -> None:
    """results.json and results.md, written as one folder (a report folder of qtool's)."""
    from qtoolkit.artifacts import Kind, write_manifest, writing_dir
    from qtoolkit.fsutil import write_json

    data = outcome.to_json()
    with writing_dir(outcome.report_dir, Kind.REPORT, inputs) as tmp:
        write_json(tmp / "results.json", data)
        (tmp / "results.md").write_text(autoquant_markdown(data))
        write_manifest(tmp, Kind.REPORT, report="autoquant")


def _feeds(session, batch: int, seq: int, vocab: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        if inp.name == "input_ids":
            feeds[inp.name] = rng.integers(5, vocab, (batch, seq), dtype=np.int64)
        elif inp.name == "attention_mask":
            feeds[inp.name] = np.ones((batch, seq), dtype=np.int64)
        else:
            feeds[inp.name] = np.zeros((batch, seq), dtype=np.int64)
    return feeds


def fallback_latency(model, search, recipe, batches, toggle, iterations: int = 20) -> list[dict]:
    """Median ORT latency (ms) of fp32 and of every fallback step (0, 1, ... units in float),
    interleaved per shape so load on the machine lands on every step alike. The model is left
    as it came (the chosen units in float)."""
    from qtoolkit.export import export_onnx
    from qtoolkit.quant.fallback import set_float
    from qtoolkit.runtime.ort_runner import ort_session

    threads = recipe.bench.threads
    vocab = int(model.config.vocab_size)
    cfg = recipe.export.model_copy(update={"fp32_baseline": False, "fp16": False})
    chosen = list(search.chosen)

    def switch(units, on):
        set_float(model, units, on)
        if toggle is not None:
            toggle(units, on)

    switch(chosen, False)
    sessions: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qtool-autoquant-") as tmp:
        for k in range(len(chosen) + 1):
            if k:
                switch([chosen[k - 1]], True)
            path = Path(tmp) / f"step{k}.onnx"
            first = export_onnx(
                model, path, cfg.model_copy(update={"fp32_baseline": k == 0}), batches[:2]
            )
            if k == 0 and first.fp32_path is not None:
                sessions["fp32"] = ort_session(first.fp32_path, threads)
                rows.append({"label": "fp32", "k": "all", "ms": {}})
            label = "all INT8" if k == 0 else f"+ {chosen[k - 1].name}"
            sessions[label] = ort_session(path, threads)
            rows.append({"label": label, "k": k, "ms": {}})
        for batch, seq in LATENCY_SHAPES:
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for s in sessions.values():
                s.run(None, _feeds(s, batch, seq, vocab))
            for i in range(iterations):
                names = list(sessions)
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    s = sessions[name]
                    feeds = _feeds(s, batch, seq, vocab)
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    times[name].append(1000 * (time.perf_counter() - t0))
            for row in rows:
                row["ms"][f"{batch}x{seq}"] = statistics.median(times[row["label"]])
    return rows
