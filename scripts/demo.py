"""`make demo`: the main job on real data in a few minutes.

Prepares data/rt-sentiment if missing (`qtool data prepare rt-sentiment`), writes the demo's
small dev/test splits (the first 400 / 600 sentences of the prepared ones) to
data/rt-sentiment-demo/, runs `qtool run recipes/demo.yaml`, then prints one table (fp32 against
INT8: accuracy with its 95% interval, p50 latency, speed-up) and where report.md is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "rt-sentiment"
DEMO = ROOT / "data" / "rt-sentiment-demo"
SUBSETS = {"dev": 400, "test": 600}
RECIPE = ROOT / "recipes" / "demo.yaml"
QTOOL = [sys.executable, "-m", "qtoolkit.cli"]


def write_subsets() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    for split, n in SUBSETS.items():
        lines = (DATA / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        target = DEMO / f"{split}.jsonl"
        if not target.is_file() or target.read_text() != "".join(lines):
            target.write_text("".join(lines))


def demo_table(bench: dict) -> str:
    """fp32 against INT8 at every timed shape: accuracy (with the 95% interval of the
    difference), p50 latency, speed-up over the faster fp32 graph."""
    from qtoolkit.tasks.compare import delta_cell

    metric = bench.get("primary_metric") or "accuracy"
    acc = bench.get("accuracy", {})
    lines = [
        f"| model | {metric} | Δ vs fp32 (points, 95% CI) | batch x seq | p50 ms | speed-up |",
        "|---|---:|---|---|---:|---:|",
    ]
    for row in bench["rows"]:
        if row["backend"] != "ort-int8" or "p50_ms" not in row:
            continue
        shape_of = (row["batch"], row["seq"])
        base = next(
            r
            for r in bench["rows"]
            if r["backend"] == row.get("baseline") and (r["batch"], r["seq"]) == shape_of
        )
        shape = f"{row['batch']}x{row['seq']}"
        for name, r in ((f"fp32 ({base['backend']})", base), ("INT8 (ort-int8)", row)):
            a = acc.get(r["backend"], {})
            value = f"{a['metrics'][metric]:.4f}" if "metrics" in a else "-"
            delta = delta_cell(a) if r is row else ""
            speedup = f"{r.get('speedup', 1.0):.2f}x"
            cells = [name, value, delta, shape, f"{r['p50_ms']:.2f}", speedup]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    start = time.perf_counter()
    prepared = not (DATA / "qtoolkit.json").is_file()
    if prepared:
        subprocess.run([*QTOOL, "data", "prepare", "rt-sentiment"], cwd=ROOT, check=True)
    write_subsets()
    run = subprocess.run([*QTOOL, "run", str(RECIPE)], cwd=ROOT)
    if run.returncode != 0:
        return run.returncode
    out = ROOT / "runs" / "demo"
    bench = json.loads((out / "bench" / "results.json").read_text())
    print()
    print(demo_table(bench))
    machine = bench.get("machine", {})
    print(
        f"\n{machine.get('cpu')}, {machine.get('threads')} threads; test: "
        f"{bench.get('accuracy_examples')} sentences of {bench.get('accuracy_data')}"
    )
    print(f"report: {out / 'report.md'} (tables and the accuracy/latency plot)")
    wall = time.perf_counter() - start
    print(f"demo wall time: {wall:.0f} s")
    summary = {
        "machine": machine,
        "wall_s": round(wall, 1),
        "note": "data preparation included" if prepared else "data/rt-sentiment already prepared",
        "bench": bench,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
