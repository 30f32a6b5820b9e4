"""Benchmark results: speed-ups against each family's float baseline, Markdown, files on disk."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def family_baselines(targets: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """family -> the target its members are compared with: its first fp32 member (else fp16).
    A family with no float member (e.g. only an INT8 engine) has no baseline."""
    baselines: dict[str, tuple[int, str]] = {}
    for t in targets:
        rank = _PRECISION_RANK.get(t["precision"])
        if rank is not None and rank < baselines.get(t["family"], (99, ""))[0]:
            baselines[t["family"]] = (rank, t["name"])
    return {family: name for family, (_, name) in baselines.items()}


def add_speedups(
    rows: list[dict[str, Any]], family_of: Mapping[str, str], baselines: Mapping[str, str]
) -> None:
    """Set `speedup` (baseline p50 / p50 at the same shape) and `baseline` on every timed row."""
    p50 = {(r["backend"], r["batch"], r["seq"]): r["p50_ms"] for r in rows if "p50_ms" in r}
    for row in rows:
        base = baselines.get(family_of.get(row["backend"], ""))
        base_p50 = p50.get((base, row["batch"], row["seq"]))
        if "p50_ms" in row and base_p50 and row["p50_ms"] > 0:
            row["speedup"] = round(base_p50 / row["p50_ms"], 3)
            row["baseline"] = base


def _accuracy_cell(acc: Mapping[str, Any] | None, metric: str) -> str:
    if not acc:
        return "-"
    if "error" in acc:
        return "error"
    return f"{acc['metrics'][metric]:.4f}"


def _runtime_lines(results: Mapping[str, Any]) -> list[str]:
    """Which machine, and what each target actually ran as (runtime, device, precision)."""
    machine = results.get("machine") or {}
    lines = ["", f"Machine: {machine.get('cpu', 'unknown CPU')}"]
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
            *(f"{r[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms")),
            f"{r['throughput']:.1f}",
            speedup,
            _accuracy_cell(accuracy.get(r["backend"]), metric),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _runtime_lines(results)
    baselines = ", ".join(f"{f}: {n}" for f, n in results.get("baselines", {}).items())
    s = results["settings"]
    lines += [
        "",
        f"Speed-up: p50 of the same runtime family's float baseline / p50 ({baselines or 'none'}).",
        f"Timing: {s['warmup']} warm-up and {s['iterations']} timed iterations per backend and "
        f"shape, interleaved; threads {s['threads'] or 'default'}; inputs: {results['inputs']}.",
    ]
    if results.get("accuracy_data"):
        lines.append(
            f"{metric}: {results['accuracy_examples']} examples of {results['accuracy_data']}."
        )
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
