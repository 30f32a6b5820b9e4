"""Measure `qtool autoquant` on a recipe and write docs/results/autoquant.json; render its table
(docs/autoquant.md) between `<!-- results:autoquant -->` and `<!-- /results:autoquant -->`.

    flock /work/notes/heavy.lock python scripts/autoquant_results.py \\
        -r recipes/minilm-rt-sentiment.yaml --set model.path=runs/.../finetuned \\
        --budget 1.0 --metric agreement --json docs/results/autoquant.json
    python scripts/autoquant_results.py --render docs/results/autoquant.json \\
        --readme docs/autoquant.md

Each run is one autoquant call; its selection is on data.eval_file only and the test figures
come from data.test_file. `render_autoquant(data)` is what scripts/update_readme.py can call.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- results:autoquant -->", "<!-- /results:autoquant -->"


def _pct(iv: dict | None) -> str:
    if not iv:
        return "-"
    return f"{100 * iv['value']:.2f} [{100 * iv['low']:.2f}, {100 * iv['high']:.2f}]"


def _row(label: str, t: dict, gemms: str) -> str:
    return (
        f"| {label} | {_pct(t.get('accuracy'))} | {_pct(t.get('delta_vs_fp32'))} | "
        f"{_pct(t['agreement'])} | {gemms} |"
    )


def render_autoquant(data: dict[str, Any]) -> str:
    """Markdown table (and a line naming model, data and machine) from the results file."""
    m = data["machine"]
    lines = [
        f"{data['model']}; test {data['num_test']} sentences, selection on dev "
        f"{data['num_dev']}; 95% paired-bootstrap intervals. {m['cpu']}, {m['cores']} cores, "
        f"{m['date'][:10]}.",
        "",
        "| model (test split) | accuracy | Δ vs fp32 (points) | agreement with fp32 | "
        "GEMMs in INT8 |",
        "|---|---|---|---|---|",
    ]
    first = data["runs"][0]["report"]["test"]
    lines.append(
        f"| fp32 | {_pct(first.get('fp32_accuracy'))} |  | 100 |  |"
    )  # fmt: skip
    for run in data["runs"]:
        rep = run["report"]
        g = rep["gemms"]
        chosen = rep["dev"]["chosen"]
        what = f"{run['label']} ({chosen['method']}"
        what += f", SQ alpha {chosen['alpha']})" if chosen["alpha"] is not None else ")"
        if rep.get("test_before_fallback"):
            ga = rep["gemms_all_int8"]
            lines.append(
                _row(what + ", no fallback", rep["test_before_fallback"],
                     f"{ga['int8']}/{ga['gemms']}")
            )  # fmt: skip
            units = rep["float_units"]
            gemms = sum(u.get("gemms", 1) for u in units)
            what += f", {len(units)} units in float ({gemms} GEMMs)"
        lines.append(_row(what, rep["test"], f"{g['int8']}/{g['gemms']}"))
    for run in data["runs"]:
        rep = run["report"]
        if rep["float_units"]:
            names = ", ".join(f"`{u['name']}`" for u in rep["float_units"])
            lines += ["", f"{run['label']}: left in float (dev rank order): {names}."]
        if rep.get("latency_ms"):
            lines += ["", f"{run['label']}, ONNX Runtime median latency (ms), each fallback step:",
                      "", "| step | 1x128 | 8x128 |", "|---|---|---|"]  # fmt: skip
            for row in rep["latency_ms"]:
                ms = row["ms"]
                lines.append(
                    f"| {row['label']} | {ms.get('1x128', 0):.1f} | {ms.get('8x128', 0):.1f} |"
                )
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    new = f"{START}\n{block}{END}"
    if not pattern.search(text):
        return text.rstrip() + "\n\n" + new + "\n"
    return pattern.sub(lambda _: new, text)


def measure(args) -> dict[str, Any]:
    from qtoolkit.bench.machine import machine_info
    from qtoolkit.pipeline.autoquant import run_autoquant
    from qtoolkit.recipe import load_recipe

    runs = []
    tools = [f"quant.smoothquant.alpha=[{args.sq_alpha}]", "calib.bias_correction=true"]
    for label, extra, budget in (
        ("PTQ", ["quant.auto.latency=false"], 100.0),
        ("PTQ + SmoothQuant + bias correction + fallback", tools, args.budget),
    ):
        overrides = [*args.set, *extra]
        recipe = load_recipe(args.recipe, overrides)
        if label == "PTQ" and (recipe.quant.smoothquant or recipe.calib.bias_correction):
            raise SystemExit("the recipe sets smoothquant/bias_correction: the PTQ row needs none")
        outcome = run_autoquant(recipe, budget, args.metric)
        runs.append({"label": label, "overrides": overrides, "report": outcome.to_json()})
        print(f"{label}: {json.dumps(outcome.to_json()['test'])}", flush=True)
    recipe = load_recipe(args.recipe, args.set)
    return {
        "renderer": "autoquant",
        "recipe": str(args.recipe),
        "overrides": args.set,
        "model": str(recipe.model.path),
        "num_test": runs[0]["report"]["test"]["num_examples"],
        "num_dev": sum(1 for _ in open(recipe.data.eval_file)),
        "machine": machine_info(recipe.bench.threads),
        "runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--recipe", type=Path)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--metric", default="agreement")
    ap.add_argument("--sq-alpha", default="0.5,0.8", help="SmoothQuant alphas searched on dev.")
    ap.add_argument("--json", type=Path, default=Path("docs/results/autoquant.json"))
    ap.add_argument("--render", type=Path, help="Only render this results file.")
    ap.add_argument("--readme", type=Path, help="Write the table into this page.")
    args = ap.parse_args()
    if args.render:
        data = json.loads(args.render.read_text())
    else:
        data = measure(args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    block = render_autoquant(data)
    print(block)
    if args.readme:
        args.readme.write_text(replace_block(args.readme.read_text(), block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
