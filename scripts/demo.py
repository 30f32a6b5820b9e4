"""`make demo`: the front door on real data in a few minutes.

Prepares data/rt-sentiment if missing (`qtool data prepare rt-sentiment`), writes the demo's
small dev/test splits (the first 400 / 600 sentences of the prepared ones) to
data/rt-sentiment-demo/, fine-tunes all-MiniLM-L6-v2 briefly (`qtool finetune -r
recipes/demo.yaml`), then runs the one command a user runs:

    qtool quantize runs/demo/finetuned --calib-file data/rt-sentiment/calib.jsonl \
        --runtime onnxruntime --test-file data/rt-sentiment-demo/test.jsonl -o runs/demo/quantized

and prints one table (fp32 against INT8 on ONNX Runtime: accuracy and agreement with their 95%
intervals, p50 latency, speed-up) and where report.md is.
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


def demo_table(report: dict) -> str:
    """fp32 against INT8 from `qtool quantize`'s report.json: accuracy, its difference and the
    agreement with fp32 (95% intervals), then p50 latency and speed-up at every timed shape."""
    from qtoolkit.tasks.compare import delta_cell
    from qtoolkit.tasks.intervals import Interval

    check = report["check"]
    fid = check["fidelity"]
    m32, m8 = fid["metrics_fp32"], fid["metrics_int8"]
    metric = "accuracy" if "accuracy" in m32 else next(iter(m32))
    diff = fid.get("accuracy_difference")
    delta = delta_cell({"delta": diff}) or "-"
    lines = [
        f"| model | {metric} | Δ vs fp32 (points, 95% CI) | agreement with fp32 (95% CI) |",
        "|---|---:|---|---|",
        f"| fp32 ({check['runtime']}) | {m32[metric]:.4f} | | |",
        f"| INT8 ({check['runtime']}, {report['chosen']['label']}) | {m8[metric]:.4f} | "
        + f"{delta} | {Interval(**fid['agreement']).percent()} |",
        "",
        "| batch x seq | fp32 p50 ms | INT8 p50 ms | speed-up (95% CI) |",
        "|---|---:|---:|---|",
    ]
    for row in check.get("latency") or []:
        s = row["speedup_vs_fp32"]
        lines.append(
            f"| {row['batch']}x{row['seq']} | {row['fp32_ms']:.2f} | {row['int8_ms']:.2f} | "
            f"{s['value']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] |"
        )
    return "\n".join(lines)


def main() -> int:
    start = time.perf_counter()
    prepared = not (DATA / "qtoolkit.json").is_file()
    if prepared:
        subprocess.run([*QTOOL, "data", "prepare", "rt-sentiment"], cwd=ROOT, check=True)
    write_subsets()
    out = ROOT / "runs" / "demo"
    steps = [
        [*QTOOL, "finetune", "-r", str(RECIPE)],
        [
            *QTOOL, "quantize", str(out / "finetuned"),
            "--calib-file", str(DATA / "calib.jsonl"),
            "--runtime", "onnxruntime",
            "--test-file", str(DEMO / "test.jsonl"),
            "-o", str(out / "quantized"),
            "--set", "data.max_length=64",
            "--set", "quantize.latency_shapes=[[1,64],[8,64]]",
        ],
    ]  # fmt: skip
    for argv in steps:
        done = subprocess.run(argv, cwd=ROOT)
        if done.returncode != 0:
            return done.returncode
    report = json.loads((out / "quantized" / "report.json").read_text())
    print()
    print(demo_table(report))
    machine = report.get("machine", {})
    fid = report["check"]["fidelity"]
    print(f"\n{machine.get('cpu')}, {machine.get('cores')} cores; test: {fid['examples']} "
          f"sentences of {fid['on']}")  # fmt: skip
    print(f"report: {out / 'quantized' / 'report.md'} (every candidate, the choice, the plot)")
    wall = time.perf_counter() - start
    print(f"demo wall time: {wall:.0f} s")
    summary = {
        "machine": machine,
        "wall_s": round(wall, 1),
        "note": "data preparation included" if prepared else "data/rt-sentiment already prepared",
        "quantize": report,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
