"""Benchmark results: speed-ups against each family's float baseline, Markdown, files on disk."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qtoolkit.bench.stats import P99_MIN_ITERATIONS

__all__ = [
    "PLOT_FILE",
    "RESULTS_JSON",
    "RESULTS_MD",
    "add_speedups",
    "family_baselines",
    "results_markdown",
    "write_results",
]

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOT_FILE = "accuracy_latency.png"
_PRECISION_RANK = {"fp32": 0, "fp16": 1}


def family_baselines(targets: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """family -> the candidates its members are compared with: its fp32 members (else its fp16
    ones), e.g. the raw fp32 graph and the same graph fused by ONNX Runtime's optimizer. A
    family with no float member (e.g. only an INT8 engine) has no baseline."""
    best_rank: dict[str, int] = {}
    for t in targets:
        rank = _PRECISION_RANK.get(t["precision"])
        if rank is not None and rank < best_rank.get(t["family"], 99):
            best_rank[t["family"]] = rank
    out: dict[str, list[str]] = {}
    for t in targets:
        if _PRECISION_RANK.get(t["precision"], 98) == best_rank.get(t["family"]):
            out.setdefault(t["family"], []).append(t["name"])
    return out


def add_speedups(
    rows: list[dict[str, Any]],
    family_of: Mapping[str, str],
    baselines: Mapping[str, Sequence[str] | str],
) -> None:
    """Set `speedup` (baseline p50 / p50 at the same shape) and `baseline` on every timed row.
    The baseline at each shape is the fastest (lowest p50) of the family's candidates, so a
    speed-up is never measured against a float graph slower than one we had."""
    p50 = {(r["backend"], r["batch"], r["seq"]): r["p50_ms"] for r in rows if "p50_ms" in r}
    for row in rows:
        cands = baselines.get(family_of.get(row["backend"], ""), [])
        cands = [cands] if isinstance(cands, str) else cands
        timed = [
            (p50[(c, row["batch"], row["seq"])], c)
            for c in cands
            if (c, row["batch"], row["seq"]) in p50
        ]
        if "p50_ms" in row and timed and row["p50_ms"] > 0:
            base_p50, base = min(timed)
            row["speedup"] = round(base_p50 / row["p50_ms"], 3)
            row["baseline"] = base


def _accuracy_cell(acc: Mapping[str, Any] | None, metric: str) -> str:
    if not acc:
        return "-"
    if "error" in acc:
        return "error"
    return f"{acc['metrics'][metric]:.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _accuracy_table(results: Mapping[str, Any], metric: str) -> list[str]:
    """Each backend's metric, its difference from the float reference and its agreement with
    it, with paired bootstrap 95% intervals ('tie' when the interval contains 0)."""
    from qtoolkit.tasks.compare import agreement_cell, delta_cell

    accuracy = {n: a for n, a in results.get("accuracy", {}).items() if "metrics" in a}
    if not accuracy:
        return []
    ref = next((a.get("agreement_with") for a in accuracy.values()), None)
    lines = [
        "",
        f"| backend | {metric} | Δ vs {ref} (points, 95% CI) | agreement with {ref} (95% CI) |",
        "|---|---:|---|---|",
    ]
    for name, acc in accuracy.items():
        same = name == ref
        cells = [
            name,
            f"{acc['metrics'][metric]:.4f}",
            "" if same else delta_cell(acc),
            "" if same else agreement_cell(acc),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _runtime_lines(results: Mapping[str, Any]) -> list[str]:
    """Which machine, and what each target actually ran as (runtime, device, precision)."""
    machine = results.get("machine") or {}
    lines = ["", f"Machine: {machine.get('cpu', 'unknown CPU')}, {machine.get('cores')} cores"]
    if machine.get("gpu"):
        lines[-1] += f", {machine['gpu']}"
    for t in results.get("targets", []):
        runs = t.get("runs_as")
        if not runs:
            continue
        used = runs.get("precision", "?")
        if runs.get("inference_precision"):
            used += f", inference precision {runs['inference_precision']}"
            used += f" ({runs.get('requested_precision', 'default')})"
        lines.append(f"- {t['name']}: {runs.get('runtime')} on {runs.get('device')}, {used}")
    return lines


def results_markdown(results: Mapping[str, Any]) -> str:
    metric = results.get("primary_metric") or "accuracy"
    accuracy = results.get("accuracy", {})
    head = ["backend", "batch x seq", "p50 ms", "p90 ms", "p99 ms", "seq/s", "speed-up", metric]
    lines = [
        f"# Benchmark: {results['recipe']}",
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 2),
    ]
    gaps = []
    for r in results["rows"]:
        if "p50_ms" not in r:
            gaps.append(f"- {r['backend']} at {r['batch']}x{r['seq']}: {r['skipped']}")
            continue
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        cells = [
            r["backend"],
            f"{r['batch']}x{r['seq']}",
            *(_ms(r.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms")),
            f"{r['throughput']:.1f}",
            speedup,
            _accuracy_cell(accuracy.get(r["backend"]), metric),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _runtime_lines(results)
    baselines = ", ".join(
        f"{f}: {' or '.join([n] if isinstance(n, str) else n)}"
        for f, n in results.get("baselines", {}).items()
    )
    s = results["settings"]
    lines += [
        "",
        "Speed-up: p50 of the same runtime family's float baseline / p50; with several "
        f"candidates, the fastest at each shape ({baselines or 'none'}).",
        f"Timing: {s['warmup']} warm-up and {s['iterations']} timed iterations per backend and "
        f"shape, interleaved; threads {s['threads'] or 'default'}; inputs: {results['inputs']}.",
    ]
    if s["iterations"] < P99_MIN_ITERATIONS:
        lines.append(
            f"p99 not shown: {s['iterations']} timed iterations (< {P99_MIN_ITERATIONS}), where "
            "the 99th percentile is the slowest run."
        )
    if results.get("accuracy_data"):
        lines.append(
            f"{metric}: {results['accuracy_examples']} examples of {results['accuracy_data']}."
        )
    lines += _accuracy_table(results, metric)
    errors = [f"- {n}: {a['error']}" for n, a in accuracy.items() if "error" in a]
    skipped = [
        f"- {s['name']}"
        + (f" ({s['backend']})" if s["backend"] != s["name"] else "")
        + f": {s['reason']}"
        for s in results["skipped"]
    ]
    for title, items in (
        ("Skipped", skipped),
        ("Not run at some shapes", gaps),
        ("Accuracy not measured", errors),
    ):
        if items:
            lines += ["", f"{title}:", "", *items]
    if results.get("plot"):
        lines += ["", f"![{metric} against p50 latency]({results['plot']})"]
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, results: dict[str, Any], plot) -> None:
    """results.json, results.md and (when `plot(path)` makes one) the PNG, all at once: the
    folder is built aside and renamed into place."""
    from qtoolkit.artifacts import Kind, write_manifest, writing_dir

    with writing_dir(out_dir, Kind.BENCH) as tmp:
        results["plot"] = PLOT_FILE if plot(tmp / PLOT_FILE) else None
        (tmp / RESULTS_JSON).write_text(json.dumps(results, indent=2, default=str) + "\n")
        (tmp / RESULTS_MD).write_text(results_markdown(results))
        write_manifest(tmp, Kind.BENCH, stage="bench", results=RESULTS_JSON)
