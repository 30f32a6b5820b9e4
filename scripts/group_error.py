"""Which quantizer groups carry a PTQ model's error: dev agreement and output KL to fp32 with
each group put back in float.

    python scripts/group_error.py -r recipes/minilm-rt-sentiment.yaml \\
        --set model.path=runs/minilm-rt-sentiment/finetuned --alpha 0.8 --method entropy

Builds the recipe's placement, SmoothQuant (`--alpha`, 0 = off), calibration (`--method`) and
bias correction, then scores the model on `data.eval_file` (dev, never test) with no group in
float and with each group in float in turn. Writes docs/results/group_error.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path

GROUPS = {
    "none (all quantized)": lambda n: False,
    "residual adds": lambda n: ".add_" in n,
    "probs·V inputs": lambda n: "matmul_a" in n or "matmul_v" in n,
    "all attention matmul inputs": lambda n: ".matmul_" in n,
    "FFN output (post-GELU) inputs": lambda n: (
        n.endswith("output.dense._input_quantizer") and "attention" not in n
    ),
    "all Linear/Conv1d inputs": lambda n: n.endswith("._input_quantizer"),
    "all weights": lambda n: n.endswith("._weight_quantizer"),
    "pooler and classifier": lambda n: "pooler" in n or "classifier" in n,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--recipe", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--alpha", type=float, default=0.8)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--limit", type=int, default=1000, help="dev sentences")
    ap.add_argument("--json", type=Path, default=Path("docs/results/group_error.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.data import read_text_examples, tokenize_batches
    from qtoolkit.models.loading import load_model, quiet_transformers
    from qtoolkit.pipeline.common import batch_forward_loop
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.quant.bias_correction import correct_biases
    from qtoolkit.quant.insert import iter_quantizers
    from qtoolkit.quant.smoothquant import apply_smoothquant
    from qtoolkit.recipe import load_recipe

    quiet_transformers()
    recipe = load_recipe(args.recipe, args.set)
    torch.set_num_threads(recipe.bench.threads)
    loaded = load_model(recipe.model, seed=recipe.seed)
    model, tok = loaded.model.eval(), loaded.tokenizer
    data = recipe.data
    calib_rows = read_text_examples(data.calib_file)[: recipe.calib.num_samples]
    calib = tokenize_batches(tok, calib_rows, recipe.calib.batch_size, data.max_length)
    dev = tokenize_batches(tok, read_text_examples(data.eval_file)[: args.limit], 64, 128)
    loop = batch_forward_loop(calib, "cpu")

    def logits(m):
        with torch.no_grad():
            return torch.cat(
                [m(**{k: v for k, v in b.items() if k != "labels"}).logits for b in dev]
            )

    ref = logits(model)
    q = copy.deepcopy(model)
    insert_quantizers(q, recipe.quant)
    if args.alpha > 0:
        apply_smoothquant(q, loop, args.alpha)
    calibrate(q, loop, recipe.calib.model_copy(update={"method": args.method}))
    correct_biases(q, loop)
    quantizers = dict(iter_quantizers(q))
    rows = []
    for label, pick in GROUPS.items():
        off = [n for n, z in quantizers.items() if pick(n) and not z._disabled]
        for n in off:
            quantizers[n].disable()
        out = logits(q)
        for n in off:
            quantizers[n].enable()
        kl = torch.nn.functional.kl_div(
            out.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean"
        )
        row = {
            "group in float": label,
            "quantizers": len(off),
            "agreement": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
            "kl_to_fp32": float(kl),
        }
        rows.append(row)
        print(f"{label:32s} {len(off):3d} quantizers  agreement {100 * row['agreement']:6.2f}%"
              f"  KL {row['kl_to_fp32']:.5f}", flush=True)  # fmt: skip
    result = {
        "renderer": "group_error",
        "recipe": str(args.recipe),
        "overrides": args.set,
        "smoothquant_alpha": args.alpha,
        "calibrator": args.method,
        "bias_correction": True,
        "split": str(data.eval_file),
        "num_dev": len(ref),
        "machine": machine_info(recipe.bench.threads),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
