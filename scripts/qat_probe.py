"""Where the TensorRT-placement INT8 model's disagreement with fp32 comes from, and whether a
different QAT objective or more text removes it: a probe on the dev split (test is never read).

    python scripts/qat_probe.py                 # ~20 min on 2 cores; docs/results/qat_probe.json
    python scripts/qat_probe.py --only budget   # the error budget alone (~1 min)

Needs the fp32 model of recipes/minilm-rt-sentiment.yaml and the PTQ start that
scripts/qat_fidelity.py writes (runs/qat-fidelity/full-quantized, `qtool quantize --runtime
tensorrt`). Measures, on the 1,000 dev sentences, the error of the INT8 logit difference
d = logit(positive) - logit(negative) against fp32's:

* the error budget: the start as it is, and with one kind of quantizer put back in float;
* QAT variants: a small loop of its own (AdamW, linear warm-up 10% and decay, batch 32, no
  dropout, the teacher frozen), so the objective can be one `qtool qat` does not offer: "kl" is
  `qtool qat`'s (KL at temperature T, x T^2), "mse" the mean squared difference of the centred
  logits; text "train" is the fine-tune split, "train+extra" adds the 13,098 Amazon, NYT and
  tweet sentences of the same vaderSentiment package (unlabelled use: the teacher gives every
  target; none of them is a movie sentence, so none is in dev or test); params "bias+LN"
  trains only the biases and LayerNorms (the weights, and so their rounding, stay as PTQ left
  them).

For each: agreement with fp32 (95% bootstrap interval), the standard deviation of the error of d
over all sentences and over those near the decision boundary (|d_fp32| < 0.5), the KL to fp32.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from group_error import GROUPS  # noqa: E402  (scripts/, next to this file)

RECIPE = ROOT / "recipes/minilm-rt-sentiment.yaml"
FP32 = Path("runs/minilm-rt-sentiment/finetuned")
START = Path("runs/qat-fidelity/full-quantized/checkpoint")
OUT = ROOT / "docs/results/qat_probe.json"
CACHE = Path("runs/qat-probe/cache")
EXTRA = ("amazonReviewSnippets", "nytEditorialSnippets", "tweets")
NEAR = 0.5  # |d_fp32| below this: near the decision boundary

# Put back in float, one kind at a time: scripts/group_error.py's groups, and every activation.
BUDGET = {
    "nothing (the PTQ start)": GROUPS["none (all quantized)"],
    "residual-add inputs": GROUPS["residual adds"],
    "attention matmul inputs": GROUPS["all attention matmul inputs"],
    "Linear inputs": GROUPS["all Linear/Conv1d inputs"],
    "every activation (weights alone INT8)": lambda n: not GROUPS["all weights"](n),
    "weights (activations alone INT8)": GROUPS["all weights"],
}
VARIANTS = {
    "kl T0.5, lr 5e-6 (qtool qat default)": {"loss": "kl", "lr": 5e-6, "steps": 94},
    "mse, lr 5e-6": {"loss": "mse", "lr": 5e-6, "steps": 94},
    "mse, lr 5e-6, train+extra": {"loss": "mse", "lr": 5e-6, "steps": 94, "text": "train+extra"},
    "mse, lr 1e-5, train+extra, 188 steps": {
        "loss": "mse", "lr": 1e-5, "steps": 188, "text": "train+extra"
    },
    "kl T0.5, lr 1e-5, train+extra, 188 steps": {
        "loss": "kl", "lr": 1e-5, "steps": 188, "text": "train+extra"
    },
    "mse, lr 1e-4, bias+LN only": {"loss": "mse", "lr": 1e-4, "steps": 94, "params": "bias+LN"},
}  # fmt: skip


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def extra_sentences() -> list[str]:
    """The package's Amazon, NYT and tweet sentences (not movie ones), shuffled with seed 0."""
    from qtoolkit.data.prepare import _fetch_sdist, read_ground_truth

    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = _fetch_sdist(CACHE)
    rows = [text for name in EXTRA for _, text, _ in read_ground_truth(sdist, name)]
    random.Random(0).shuffle(rows)
    return rows


class Probe:
    """The dev split, tokenized once, and fp32's logits on it."""

    def __init__(self, teacher, tokenizer, texts: list[str]):
        self.tokenizer, self.texts = tokenizer, texts
        self.batches = [self.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        self.ref = self.logits(teacher)
        self.d_ref = self.ref[:, 1] - self.ref[:, 0]

    def encode(self, texts: list[str]):
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=128, return_tensors="pt"
        )

    def logits(self, model):
        import torch

        with torch.no_grad():
            return torch.cat([model.eval()(**batch).logits.float() for batch in self.batches])

    def measure(self, model) -> dict[str, Any]:
        from qtoolkit.tasks.intervals import agreement_interval
        from qtoolkit.train.distill import kd_loss

        out = self.logits(model)
        d = out[:, 1] - out[:, 0]
        err, near = d - self.d_ref, self.d_ref.abs() < NEAR
        kl = kd_loss(out, self.ref, 1.0)  # KL(p_fp32 || p_int8), mean over sentences
        preds, ref = (d > 0).tolist(), (self.d_ref > 0).tolist()
        return {
            "agreement": agreement_interval(preds, ref).to_dict(),
            "flips": sum(p != r for p, r in zip(preds, ref, strict=True)),
            "err_std": round(float(err.std()), 4),
            "err_std_near": round(float(err[near].std()), 4),
            "num_near": int(near.sum()),
            "kl": float(kl),
        }


def budget(probe: Probe) -> dict[str, Any]:
    from pytorch_quantization.nn import TensorQuantizer

    from qtoolkit.quant import load_quantized

    model = load_quantized(START).model
    quantizers = {n: m for n, m in model.named_modules() if isinstance(m, TensorQuantizer)}
    rows = {}
    for label, pick in BUDGET.items():
        chosen = [q for n, q in quantizers.items() if pick(n)]
        for q in chosen:
            q.disable()
        rows[label] = {"quantizers_in_float": len(chosen), **probe.measure(model)}
        for q in chosen:
            q.enable()
        print(f"{label}: {rows[label]}", flush=True)
    return rows


def train_variant(probe: Probe, teacher, train: list[str], extra: list[str], spec: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from qtoolkit.quant import load_quantized
    from qtoolkit.train.distill import kd_loss

    torch.manual_seed(0)
    rng = random.Random(0)
    student = load_quantized(START).model.eval()  # eval: no dropout; fake quant still trains
    params = []
    for name, p in student.named_parameters():
        keep = spec.get("params", "all") == "all" or name.endswith(".bias") or "LayerNorm" in name
        p.requires_grad_(keep)
        if keep:
            params.append(p)
    texts = train + (extra if spec.get("text") == "train+extra" else [])
    steps, warm = spec["steps"], max(1, spec["steps"] // 10)
    opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm)))
    )
    history = [{"step": 0, **probe.measure(student)}]
    order: list[int] = []
    begin = time.perf_counter()
    for step in range(1, steps + 1):
        if len(order) < 32:
            fresh = list(range(len(texts)))
            rng.shuffle(fresh)
            order += fresh
        batch = probe.encode([texts[i] for i in order[:32]])
        order = order[32:]
        with torch.no_grad():
            t = teacher(**batch).logits
        s = student(**batch).logits
        if spec["loss"] == "kl":
            loss = kd_loss(s, t, spec.get("temperature", 0.5))  # qtool qat's KD term
        else:
            loss = F.mse_loss(s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 47 == 0 or step == steps:
            history.append({"step": step, **probe.measure(student)})
            print(f"  step {step}: {history[-1]}", flush=True)
    return {
        "settings": spec,
        "trainable_parameters": sum(p.numel() for p in params),
        "train_sentences": len(texts),
        "seconds": round(time.perf_counter() - begin, 1),
        "history": history,
    }


def _cell(m: dict[str, Any]) -> str:
    from qtoolkit.tasks.intervals import Interval

    return (
        f"{Interval(**m['agreement']).percent()} | {m['flips']} | "
        f"{m['err_std']:.3f} | {m['err_std_near']:.3f} | {m['kl']:.5f}"
    )


def render(data: dict[str, Any]) -> str:
    head = (
        "agreement with fp32 | flips | error std of d | near the boundary | KL to fp32 |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    lines = [f"| in float (dev, {data['num_dev']} sentences) | {head}"]
    for label, m in data.get("budget", {}).items():
        lines.append(f"| {label} | {_cell(m)} |")
    variants = data.get("variants", {})
    if variants:
        lines += ["", f"| QAT variant (from the PTQ start), dev step | {head}"]
        for label, v in variants.items():
            for h in v["history"][1:]:
                lines.append(f"| {label}, step {h['step']} | {_cell(h)} |")
    lines += [
        "",
        f"d = logit(positive) - logit(negative); error = d(INT8) - d(fp32); near the boundary: "
        f"the {data['num_near']} dev sentences with |d(fp32)| < {NEAR}. {data['note']}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.fsutil import write_json
    from qtoolkit.models import load_model
    from qtoolkit.recipe import load_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["budget", "variants"])
    args = parser.parse_args()
    for need in (FP32, START):
        if not need.exists():
            raise SystemExit(f"{need} is missing: run scripts/qat_fidelity.py first")
    torch.set_num_threads(2)
    recipe = load_recipe(RECIPE, [f'model.path="{FP32}"'])
    loaded = load_model(recipe.model)
    teacher = loaded.model.eval()
    probe = Probe(teacher, loaded.tokenizer, _texts(ROOT / "data/rt-sentiment/dev.jsonl"))
    previous = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data = {
        "renderer": "qat_probe",
        "machine": machine_info(),
        "start": str(START),
        "num_dev": len(probe.texts),
        "num_near": int((probe.d_ref.abs() < NEAR).sum()),
        "note": "PyTorch fake quant, TensorRT placement (every GEMM, attention matmul and "
        "residual add INT8, symmetric); the start's bias correction was computed with INT8 "
        "weights, so it stays in the row with the weights in float. Dev only.",
        "budget": previous.get("budget", {}),
        "variants": previous.get("variants", {}),
    }
    if args.only != "variants":
        data["budget"] = budget(probe)
    if args.only != "budget":
        train = _texts(ROOT / "data/rt-sentiment/train.jsonl")
        extra = extra_sentences()
        for label, spec in VARIANTS.items():
            print(label, flush=True)
            data["variants"][label] = train_variant(probe, teacher, train, extra, spec)
            write_json(OUT, data)  # an interrupted run keeps what it measured
    write_json(OUT, data)
    print(render(data))


if __name__ == "__main__":
    main()
