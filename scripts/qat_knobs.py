"""Choose `qtool qat`'s defaults on dev: one QAT run per knob setting, each changed alone from a
base, all from the same PTQ start (`qtool quantize --runtime tensorrt`), scored by agreement with
fp32 on data.eval_file (dev; the test split is never read here), then dev accuracy.

    python scripts/qat_knobs.py --start runs/qat-fidelity/full-quantized

Writes docs/results/qat_knobs.json after every run (finished variants are skipped when run
again, so an interrupted search continues). scripts/qat_fidelity.py reports the chosen
defaults on test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "recipes/minilm-rt-sentiment.yaml"

# The base the variants change one knob of; the recipe defaults (qtoolkit/recipe_qat.py) are
# the best of the variants on dev agreement, then dev accuracy.
BASE: dict[str, object] = {
    "distill": True,
    "label_weight": 0.0,
    "temperature": 1.0,
    "hidden_mse_weight": 0.0,
    "learning_rate": 2e-5,
    "warmup_ratio": 0.1,
    "epochs": 0.5,
    "dropout": False,
    "learn_amax": False,
}

VARIANTS: dict[str, dict[str, object]] = {
    "base": {},
    "temperature 2": {"temperature": 2.0},
    "temperature 4": {"temperature": 4.0},
    "label_weight 0.5": {"label_weight": 0.5},
    "hidden_mse 0.05": {"hidden_mse_weight": 0.05},
    "learn_amax": {"learn_amax": True},
    "learn_amax, frozen after warm-up": {"learn_amax": True, "freeze_amax_after": 0.1},
    "lr 5e-5": {"learning_rate": 5e-5},
    "lr 1e-5": {"learning_rate": 1e-5},
    "dropout on": {"dropout": True},
    "1 epoch": {"epochs": 1.0},
    "lr 1e-4": {"learning_rate": 1e-4},
    "hidden_mse 1": {"hidden_mse_weight": 1.0},
    "lr 1e-4, hidden_mse 1": {"learning_rate": 1e-4, "hidden_mse_weight": 1.0},
    "lr 1e-4, learn_amax": {"learning_rate": 1e-4, "learn_amax": True},
    "temperature 0.5": {"temperature": 0.5},
    "temperature 0.25": {"temperature": 0.25},
    "temperature 0.1": {"temperature": 0.1},
    "temperature 0.5, learn_amax, frozen after warm-up": {
        "temperature": 0.5,
        "learn_amax": True,
        "freeze_amax_after": 0.1,
    },
}


def _run(name: str, settings: dict, start: Path, runs: Path) -> dict:
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.recipe import load_recipe

    folder = runs / name.replace(" ", "_").replace(",", "").replace("-", "")
    overrides = [f"qat.{k}={json.dumps(v)}" for k, v in settings.items()]
    overrides += [
        f"qat.start_from={json.dumps(str(start))}",
        f"qat.output_dir={json.dumps(str(folder))}",
        "qat.resume=false",
        "qat.save_every_steps=null",
    ]
    recipe = load_recipe(RECIPE, overrides)
    begin = time.perf_counter()
    outcome = run_qat(recipe)
    seconds = time.perf_counter() - begin
    best = outcome.best
    keep = ("step", "epoch", "agreement", "agreement_low", "agreement_high", "kl", "accuracy")
    return {
        "settings": settings,
        "best_step": outcome.best_step,
        "best": {k: best.get(k) for k in keep},
        "start": {k: outcome.start_metrics.get(k) for k in keep[2:]},
        "steps": outcome.steps,
        "seconds": round(seconds, 1),
        "history": [{k: r.get(k) for k in keep} for r in outcome.history],
    }


def render(data: dict) -> str:
    """The docs/qat.md block: each variant's dev figures at its best step, the base first."""
    rows = data["variants"]
    lines = [
        "| change from the base (dev) | best dev agreement [95% CI] | KL to fp32 | dev accuracy "
        "| best step / steps | wall time |",
        "|---|---|---:|---:|---|---:|",
    ]

    def figures(r: dict) -> str:
        return (
            f"{100 * r['agreement']:.2f}% [{100 * r['agreement_low']:.2f}, "
            f"{100 * r['agreement_high']:.2f}] | {r['kl']:.5f} | {r['accuracy']:.4f}"
        )

    lines.append(f"| PTQ start (no QAT) | {figures(next(iter(rows.values()))['start'])} | | |")
    for name, r in rows.items():
        lines.append(
            f"| {name} | {figures(r['best'])} | {r['best_step']} / {r['steps']} | "
            f"{r['seconds']:.0f} s |"
        )
    base = ", ".join(f"{k} {v}" for k, v in data["base"].items())
    lines += ["", f"Base: {base}. Start: `{data['start']}`; {data['split']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    from qtoolkit.bench.machine import machine_info
    from qtoolkit.fsutil import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=Path, required=True, help="qtool quantize output folder")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/qat-fidelity/knobs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/qat_knobs.json")
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = results.get("variants", {})
    for name, change in VARIANTS.items():
        if (args.only and name not in args.only) or name in rows:
            continue
        rows[name] = _run(name, {**BASE, **change}, args.start, args.runs)
        best = rows[name]["best"]
        print(
            f"{name}: dev agreement {100 * best['agreement']:.2f}% "
            f"[{100 * best['agreement_low']:.2f}, {100 * best['agreement_high']:.2f}], "
            f"accuracy {best['accuracy']:.4f}, step {rows[name]['best_step']}, "
            f"{rows[name]['seconds']:.0f}s",
            flush=True,
        )
        results = {
            "renderer": "qat_knobs",
            "machine": machine_info(),
            "recipe": str(RECIPE.relative_to(ROOT)),
            "start": str(args.start),
            "split": "dev (data.eval_file)",
            "base": BASE,
            "variants": rows,
        }
        write_json(args.out, results)


if __name__ == "__main__":
    main()
