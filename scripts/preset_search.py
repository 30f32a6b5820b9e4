"""What each runtime preset of `qtool quantize` should hold, measured on the dev split.

    python scripts/preset_search.py                  # writes docs/results/preset_search.json
    python scripts/preset_search.py --quick          # fewer alphas (a smoke run)

On the fine-tuned MiniLM of recipes/minilm-rt-sentiment.yaml (run `qtool finetune` first), for
each placement (residual adds in float: the CPU presets; residual adds INT8: TensorRT's, with
SmoothQuant on all sites or only where it folds into weights), every SmoothQuant alpha x
calibrator x bias correction is built with the same machinery `qtool quantize` uses
(qtoolkit.quant.candidates) and scored twice:

* label-free, as `qtool quantize` scores it: KL of the logits from fp32's on the held-out slice
  of the calibration file (the sentences that did not set the ranges);
* on the dev split (data/rt-sentiment/dev.jsonl, 1,000 sentences): agreement with fp32 (with
  its 95% interval), accuracy and KL.

The presets are chosen from the dev columns; the test split is not read. The script also gives
the rank correlation between the held-out KL and dev agreement / dev KL, which says whether the
label-free choice `qtool quantize` makes is the one a labelled dev set would make.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ALL_SITES = ["qkv", "ffn_in", "attn_out", "ffn_out"]
PLACEMENTS = {
    # name: (quant overrides, SmoothQuant sites, alphas, bias correction settings)
    "residual-float": (
        {"residual_add": False},
        ALL_SITES,
        [None, 0.5, 0.8, 0.9, 0.95],
        (False, True),
    ),
    "residual-int8": ({"residual_add": True}, ALL_SITES, [None, 0.8, 0.95], (False, True)),
    "residual-int8-attn_out": ({"residual_add": True}, ["attn_out"], [0.8, 0.95], (True,)),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spearman(a: list[float], b: list[float]) -> float:
    import numpy as np

    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/minilm-rt-sentiment/finetuned")
    ap.add_argument("--calib", default="data/rt-sentiment/calib.jsonl")
    ap.add_argument("--dev", default="data/rt-sentiment/dev.jsonl")
    ap.add_argument("--quick", action="store_true", help="two alphas, two calibrators")
    ap.add_argument("--dev-limit", type=int, default=600, help="dev sentences scored")
    ap.add_argument("--placements", default=",".join(PLACEMENTS))
    ap.add_argument("--json", default="docs/results/preset_search.json")
    args = ap.parse_args()

    import torch

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.fsutil import write_json
    from qtoolkit.pipeline.common import (
        batch_forward_loop,
        load_trained_model,
        split_evaluator,
        stage_task,
    )
    from qtoolkit.pipeline.holdout import HoldoutScorer, split_calibration
    from qtoolkit.quant import insert_quantizers
    from qtoolkit.quant.candidates import score_candidates
    from qtoolkit.recipe import load_recipe
    from qtoolkit.tasks.evaluation import agreement, output_kl
    from qtoolkit.tasks.intervals import agreement_interval

    methods = ["entropy", "mse"] if args.quick else ["max", "percentile", "mse", "entropy"]
    base = load_recipe(
        None,
        [f"model.path={args.model}", f"data.calib_file={args.calib}", f"data.eval_file={args.dev}"],
    )
    task = stage_task(base)
    loaded = load_trained_model(base.model, base.seed)
    fp32_model = loaded.model.eval()
    split = split_calibration(
        base.model.task, loaded.tokenizer, args.calib, base.data, 512, 128, 32
    )
    scorer = HoldoutScorer(split.holdout_batches, task.output_names, "cpu")
    scorer.set_reference(fp32_model)
    dev = split_evaluator(
        base, task, loaded.tokenizer, args.dev, fp32_model.config, limit=args.dev_limit
    )
    dev_out: list = []
    dev_metrics, dev_preds, _ = dev.run(fp32_model, "fp32 (dev)", sink=dev_out)
    log(
        f"fp32 dev accuracy {dev_metrics['accuracy']:.4f}; {split.num_range} range sentences, "
        f"{split.num_holdout} held out"
    )
    rows = []
    start = time.perf_counter()
    for placement in args.placements.split(","):
        quant_update, sites, alphas, corrections = PLACEMENTS[placement]
        if args.quick:
            alphas = [a for a in alphas if a in (None, 0.8)]
        for bias_correction in corrections:
            model = load_trained_model(base.model, base.seed).model.eval()
            insert_quantizers(model, base.quant.model_copy(update=quant_update))
            loop = batch_forward_loop(split.range_batches, "cpu")
            # As qtool quantize measures bias corrections: on the first 128 range sentences.
            bias_loop = batch_forward_loop(split.range_batches[:4], "cpu", "bias correction")

            def score(m, candidate, placement=placement):
                row = scorer.score(m, f"held-out: {candidate.label}")
                out: list = []
                metrics, preds, _ = dev.run(m, f"dev: {placement} {candidate.label}", sink=out)
                row["dev_accuracy"] = metrics["accuracy"]
                row["dev_agreement"] = agreement_interval(list(preds), list(dev_preds)).to_dict()
                row["dev_kl"] = output_kl(out, dev_out)
                assert abs(row["dev_agreement"]["value"] - agreement(preds, dev_preds)) < 1e-6
                log(
                    f"{placement:24s} {candidate.label:45s} held-out kl {row['kl']:.5f}  dev "
                    f"agreement {row['dev_agreement']['value']:.4f} kl {row['dev_kl']:.5f}"
                )
                return row

            scored = score_candidates(
                model, loop, base.calib, alphas, methods, sites, bias_correction, score, bias_loop
            )
            for candidate, row in scored:
                rows.append({"placement": placement, "sites": sites, **candidate.to_dict(), **row})
            del model
            write_json(ROOT / (args.json + ".partial"), {"rows": rows})  # a kill loses little
    by_placement = {}
    for placement in {r["placement"] for r in rows}:
        mine = [r for r in rows if r["placement"] == placement]
        kl = [r["kl"] for r in mine]
        by_placement[placement] = {
            "candidates": len(mine),
            "spearman_heldout_kl_vs_dev_kl": spearman(kl, [r["dev_kl"] for r in mine]),
            "spearman_heldout_kl_vs_dev_disagreement": spearman(
                kl, [-r["dev_agreement"]["value"] for r in mine]
            ),
            "best_by_heldout_kl": min(mine, key=lambda r: r["kl"]),
            "best_by_dev_agreement": max(
                mine, key=lambda r: (r["dev_agreement"]["value"], -r["dev_kl"])
            ),
        }
    result = {
        "what": "preset search: every candidate scored label-free (held-out KL) and on dev",
        "model": args.model,
        "calib_file": args.calib,
        "dev_file": args.dev,
        "num_range": split.num_range,
        "num_holdout": split.num_holdout,
        "num_dev": dev.num_examples,
        "fp32_dev_accuracy": dev_metrics["accuracy"],
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine_info(torch.get_num_threads()),
        "interval": "bootstrap over dev sentences, 2000 resamples, 95%",
        "placements": by_placement,
        "rows": rows,
    }
    write_json(ROOT / args.json, result)
    (ROOT / (args.json + ".partial")).unlink(missing_ok=True)
    print(
        f"{'placement':24s} {'candidate':45s} {'held-out KL':>11s} {'dev agree':>9s} "
        f"{'dev KL':>8s} {'dev acc':>7s}"
    )
    for r in sorted(rows, key=lambda r: (r["placement"], -r["dev_agreement"]["value"])):
        label = f"{r['method']}, alpha {r['alpha']}, bc {r['bias_correction']}"
        print(
            f"{r['placement']:24s} {label:45s} {r['kl']:11.5f} "
            f"{100 * r['dev_agreement']['value']:8.2f}% {r['dev_kl']:8.5f} "
            f"{100 * r['dev_accuracy']:6.2f}"
        )
    for name, p in by_placement.items():
        print(
            f"{name}: spearman(held-out KL, dev KL) {p['spearman_heldout_kl_vs_dev_kl']:.2f}, "
            f"(held-out KL, dev disagreement) "
            f"{p['spearman_heldout_kl_vs_dev_disagreement']:.2f}"
        )
    log(f"wrote {args.json}")


def _label(r: dict) -> str:
    alpha = "no SmoothQuant" if r["alpha"] is None else f"SmoothQuant {r['alpha']:g}"
    return f"{r['method']}, {alpha}" + (", bias correction" if r["bias_correction"] else "")


def _agree(d: dict) -> str:
    return f"{100 * d['value']:.2f}% [{100 * d['low']:.2f}, {100 * d['high']:.2f}]"


def render(data: dict) -> str:
    """Per placement: the best candidates on dev, the one the held-out KL picks, the best per
    alpha / calibrator / bias correction, and how well the held-out KL ranks the candidates."""
    out = []
    for name, p in data["placements"].items():
        rows = [r for r in data["rows"] if r["placement"] == name]
        picked = p["best_by_heldout_kl"]
        out += [
            f"**{name}** (SmoothQuant sites: {', '.join(rows[0]['sites'])}; {len(rows)} "
            f"candidates). Rank correlation of the held-out KL with dev KL "
            f"{p['spearman_heldout_kl_vs_dev_kl']:.2f}, with dev disagreement "
            f"{p['spearman_heldout_kl_vs_dev_disagreement']:.2f}.",
            "",
            "| candidate | held-out KL | dev agreement with fp32 | dev KL | dev accuracy |",
            "|---|---:|---|---:|---:|",
        ]
        ranked = sorted(rows, key=lambda r: (-r["dev_agreement"]["value"], r["dev_kl"]))
        shown = ranked[:5] + ([picked] if picked not in ranked[:5] else [])
        for r in shown:
            mark = " (held-out KL's pick)" if r is picked or r == picked else ""
            out.append(
                f"| {_label(r)}{mark} | {r['kl']:.5f} | {_agree(r['dev_agreement'])} | "
                f"{r['dev_kl']:.5f} | {100 * r['dev_accuracy']:.2f} |"
            )
        for key, title in (("alpha", "alpha"), ("method", "calibrator"),
                           ("bias_correction", "bias correction")):  # fmt: skip
            best = {}
            for r in rows:
                v = r[key]
                if v not in best or r["dev_agreement"]["value"] > best[v]["dev_agreement"]["value"]:
                    best[v] = r
            cells = ", ".join(
                f"{'none' if v is None else v}: {100 * b['dev_agreement']['value']:.2f}%"
                for v, b in best.items()
            )
            out.append(f"\nBest dev agreement by {title}: {cells}.")
        out.append("")
    out.append(
        f"fp32 dev accuracy {100 * data['fp32_dev_accuracy']:.2f} on {data['num_dev']} dev "
        f"sentences; {data['num_range']} calibration sentences set the ranges, "
        f"{data['num_holdout']} held out score them (the label-free KL). Intervals: "
        f"{data['interval']}. The search took {data['seconds'] / 60:.0f} min."
    )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
