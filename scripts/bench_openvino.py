"""OpenVINO INT8 on the CPU: qtool's QDQ ONNX against NNCF's own INT8 model, in one run.

    python scripts/bench_openvino.py                    # writes docs/results/bench_openvino.json
    python scripts/bench_openvino.py --models minilm --rounds 5 --json runs/ov.json

The peer is NNCF (`nncf.quantize`, OpenVINO's quantizer) at the settings its documentation
recommends for transformers: `model_type=TRANSFORMER` (SmoothQuant and fast bias correction on),
the default preset, on the same fp32 ONNX and the same calibration sentences as qtool. `nncf` is
not a qtoolkit dependency: this script installs it with pip when it is missing.

Per model (the fine-tuned MiniLM classifier of recipes/minilm-rt-sentiment.yaml, and a BERT-base
shape with random weights for speed only):

* qtool: insert quantizers and calibrate with the recipe's `quant` and `calib` sections (the
  calibrator the PTQ sweep chose on dev), export both layouts (`onnxruntime`, the CPU layout,
  and `tensorrt`) and the fp32 baseline, each validated against PyTorch as every export is;
* NNCF: `nncf.quantize` of that fp32 ONNX, saved as OpenVINO IR;
* timed, interleaved per shape (round robin, order rotated each round) on the same tokenized
  inputs with `--threads` threads: `ort-fp32`, `ort-int8` (ONNX Runtime), `ov-fp32` (f32
  forced), `ov-default` (OpenVINO's default precision: bf16 where the CPU has native bf16, as
  recorded), `ov-int8` / `ov-int8-trt` (qtool's two layouts), `nncf-int8`;
* accuracy on the test split (MiniLM): each model's accuracy, its difference to fp32 and its
  agreement with fp32, with paired-bootstrap 95% intervals.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ort import BERT_BASE, log, parse_shapes  # noqa: E402 - sibling script

VARIANTS = ("ort-fp32", "ort-int8", "ov-fp32", "ov-default", "ov-int8", "ov-int8-trt", "nncf-int8")


def ensure_nncf() -> str:
    if importlib.util.find_spec("nncf") is None:
        log("installing nncf (the peer; not a qtoolkit dependency)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nncf"], check=True)
    import nncf

    return nncf.__version__


def load_models(name: str, args):
    """(float model, tokenizer) for `name`; a fresh load each call."""
    from qtoolkit.models import load_model
    from qtoolkit.recipe import ModelConfig

    if name == "bert-base":
        cfg = ModelConfig(path=args.minilm, random_init=True, config_overrides=BERT_BASE)
    else:
        cfg = ModelConfig(path=args.minilm)
    loaded = load_model(cfg, seed=0)
    return loaded.model, loaded.tokenizer


def numpy_rows(tokenizer, examples, max_length: int) -> list[dict[str, np.ndarray]]:
    """One tokenized example per dict (batch 1, no padding), as NNCF's calibration wants."""
    rows = []
    for e in examples:
        enc = tokenizer(e.text, truncation=True, max_length=max_length, return_tensors="np")
        rows.append({k: v.astype(np.int64) for k, v in enc.items()})
    return rows


def build_qtool(model, recipe, work: Path, calib, val, name: str) -> dict:
    """Calibrate with the recipe and export both layouts; returns paths and validation lines."""
    from qtoolkit.export import export_onnx
    from qtoolkit.quant import calibrate, insert_quantizers

    insert_quantizers(model, recipe.quant)
    t0 = time.perf_counter()
    calibrate(model, lambda m: [m(**b) for b in calib], recipe.calib)
    log(f"{name}: qtool calibration ({recipe.calib.method}) {time.perf_counter() - t0:.0f}s")
    # Random-weight models give near-constant logits, so argmax agreement says little there;
    # the max-|diff| tolerance is the check that matters for them.
    agree = 0.95 if name == "minilm" else 0.5
    base = recipe.export.model_copy(update={"min_argmax_agreement": agree})
    cpu = export_onnx(
        model,
        work / f"{name}.int8.onnx",
        base.model_copy(update={"target": "onnxruntime", "fp32_baseline": True}),
        val,
    )
    trt = export_onnx(
        model, work / f"{name}.trt.onnx", base.model_copy(update={"target": "tensorrt"}), val
    )
    return {
        "paths": {"fp32": cpu.fp32_path, "int8": cpu.path, "int8-trt": trt.path},
        "validation": {
            "onnxruntime layout": cpu.validation.summary(),
            "tensorrt layout": trt.validation.summary(),
            "fp32": cpu.fp32_validation.summary(),
        },
        "calib_seconds": round(time.perf_counter() - t0, 1),
    }


def build_nncf(fp32_onnx: Path, rows, out: Path) -> tuple[Path, float]:
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(fp32_onnx))
    t0 = time.perf_counter()
    quantized = nncf.quantize(
        model,
        nncf.Dataset(rows),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(rows),
    )
    seconds = time.perf_counter() - t0
    ov.save_model(quantized, str(out))
    return out, seconds


def runners_for(paths: dict, threads: int) -> dict:
    from qtoolkit.runtime.ort_runner import OrtRunner
    from qtoolkit.runtime.ov_runner import OpenVinoRunner

    return {
        "ort-fp32": OrtRunner(paths["fp32"], threads),
        "ort-int8": OrtRunner(paths["int8"], threads),
        "ov-fp32": OpenVinoRunner(paths["fp32"], threads, "f32"),
        "ov-default": OpenVinoRunner(paths["fp32"], threads),
        "ov-int8": OpenVinoRunner(paths["int8"], threads),
        "ov-int8-trt": OpenVinoRunner(paths["int8-trt"], threads),
        "nncf-int8": OpenVinoRunner(paths["nncf"], threads),
    }


def encode(tokenizer, examples, max_length: int, padding: str) -> dict[str, np.ndarray]:
    enc = tokenizer(
        [e.text for e in examples],
        padding=padding,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return {k: v.astype(np.int64) for k, v in enc.items()}


def padded_feed(tokenizer, sentences, batch_size: int, seq: int) -> dict[str, np.ndarray]:
    rows = (sentences * (1 + batch_size // len(sentences)))[:batch_size]
    return encode(tokenizer, rows, seq, "max_length")


def interleaved(calls: dict, rounds: int, budget_s: float) -> dict[str, list[float]]:
    """Round-robin timing, the order rotated each round; two warm-up calls each."""
    names = list(calls)
    first = {}
    for n in names:
        calls[n]()
        t = time.perf_counter()
        calls[n]()
        first[n] = time.perf_counter() - t
    rounds = max(5, min(rounds, int(budget_s / max(sum(first.values()), 1e-6))))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            calls[n]()
            times[n].append(time.perf_counter() - t)
    return times


def predictions(runner, tokenizer, examples, max_length: int, batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        logits = runner(encode(tokenizer, chunk, max_length, "longest"))["logits"]
        out.append(np.asarray(logits).argmax(-1))
    return np.concatenate(out)


def accuracy_table(runners: dict, tokenizer, examples, label2id: dict, max_length: int) -> dict:
    from qtoolkit.tasks.intervals import agreement_interval, paired_bootstrap

    labels = np.array([label2id.get(str(e.label), e.label) for e in examples], dtype=np.int64)
    preds = {}
    for v, r in runners.items():
        t0 = time.perf_counter()
        preds[v] = predictions(r, tokenizer, examples, max_length)
        log(f"accuracy {v}: {np.mean(preds[v] == labels):.4f} ({time.perf_counter() - t0:.0f}s)")
    ref = preds["ort-fp32"]
    ref_ok = (ref == labels).astype(float)
    table = {}
    for v, p in preds.items():
        ok = (p == labels).astype(float)
        table[v] = {
            "accuracy": round(float(ok.mean()), 6),
            "delta_vs_fp32": paired_bootstrap(ok, ref_ok).to_dict(),
            "agreement": agreement_interval(list(p), list(ref)).to_dict(),
        }
    nncf_ok = (preds["nncf-int8"] == labels).astype(float)
    for v in ("ov-int8", "ov-int8-trt"):
        ok = (preds[v] == labels).astype(float)
        table[v]["delta_vs_nncf"] = paired_bootstrap(ok, nncf_ok).to_dict()
    return table


def ratios(latency: dict) -> dict:
    """Speed-ups (>1: the first runs faster) per model and shape."""
    pairs = {
        "ov-int8 / nncf-int8": ("nncf-int8", "ov-int8"),
        "ov-int8-trt / nncf-int8": ("nncf-int8", "ov-int8-trt"),
        "ov-int8 / ov-default": ("ov-default", "ov-int8"),
        "ov-int8-trt / ov-default": ("ov-default", "ov-int8-trt"),
        "nncf-int8 / ov-default": ("ov-default", "nncf-int8"),
        "ov-int8 / ort-int8": ("ort-int8", "ov-int8"),
        "ort-int8 / ort-fp32": ("ort-fp32", "ort-int8"),
    }
    out: dict = {}
    for model, shapes in latency.items():
        for shape, rows in shapes.items():
            for label, (slow, fast) in pairs.items():
                value = rows[slow]["median_ms"] / rows[fast]["median_ms"]
                out.setdefault(model, {}).setdefault(shape, {})[label] = round(value, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/minilm-rt-sentiment.yaml")
    parser.add_argument("--minilm", default="runs/minilm-rt-sentiment/finetuned")
    parser.add_argument("--models", default="minilm,bert-base")
    parser.add_argument("--shapes", default="1x128,32x64")
    parser.add_argument(
        "--calib-samples", type=int, help="calibration sentences (default: calib.num_samples)"
    )
    parser.add_argument("--bert-base-calib", type=int, default=128, help="for the BERT-base shape")
    parser.add_argument("--test-limit", type=int, default=None, help="default: the whole split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--budget-s", type=float, default=90.0, help="timing seconds per shape")
    parser.add_argument("--work-dir", type=Path, help="keep the ONNX and IR files here")
    parser.add_argument("--json", type=Path, default=Path("docs/results/bench_openvino.json"))
    args = parser.parse_args()

    import warnings

    import torch

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.data import read_text_examples, tokenize_batches
    from qtoolkit.models.loading import quiet_transformers
    from qtoolkit.recipe import load_recipe

    warnings.filterwarnings("ignore")
    quiet_transformers()
    torch.set_num_threads(args.threads)
    nncf_version = ensure_nncf()
    recipe = load_recipe(args.recipe)
    calib_examples = read_text_examples(recipe.data.calib_file)
    test_examples = read_text_examples(recipe.data.test_file)[: args.test_limit]
    max_length = recipe.data.max_length
    report: dict = {
        "renderer": "bench_openvino",
        "machine": {**machine_info(args.threads), "load_average": os.getloadavg()},
        "nncf": nncf_version,
        "args": {k: str(v) for k, v in vars(args).items()},
        "recipe": {"calib": recipe.calib.model_dump(mode="json"), "path": args.recipe},
        "models": {},
        "latency": {},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ov-") as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in [m for m in args.models.split(",") if m]:
            model, tokenizer = load_models(name, args)
            model.eval()
            n_calib = args.calib_samples or recipe.calib.num_samples
            if name == "bert-base":
                n_calib = min(n_calib, args.bert_base_calib)
            calib_rows = calib_examples[:n_calib]
            calib = tokenize_batches(tokenizer, calib_rows, recipe.calib.batch_size, max_length)
            val = tokenize_batches(tokenizer, calib_rows[: recipe.export.num_samples], 16, 128)
            built = build_qtool(model, recipe, work, calib, val, name)
            paths = built["paths"]
            paths["nncf"], nncf_s = build_nncf(
                paths["fp32"], numpy_rows(tokenizer, calib_rows, max_length), work / f"{name}.xml"
            )
            log(f"{name}: NNCF quantize {nncf_s:.0f}s on {len(calib_rows)} sentences")
            runners = runners_for(paths, args.threads)
            entry: dict = {
                "calibration_sentences": len(calib_rows),
                "qtool": {k: v for k, v in built.items() if k != "paths"},
                "nncf_seconds": round(nncf_s, 1),
                "openvino": {
                    v: r.details() for v, r in runners.items() if v.startswith(("ov", "nn"))
                },
            }
            if name == "minilm":
                label2id = {str(k): v for k, v in (model.config.label2id or {}).items()}
                entry["accuracy"] = accuracy_table(
                    runners, tokenizer, test_examples, label2id, max_length
                )
                entry["num_test"] = len(test_examples)
            report["models"][name] = entry
            report["latency"][name] = {}
            for batch_size, seq in parse_shapes(args.shapes):
                feed = padded_feed(tokenizer, calib_examples, batch_size, seq)
                calls = {v: r.prepare(feed) for v, r in runners.items()}
                times = interleaved(calls, args.rounds, args.budget_s)
                report["latency"][name][f"{batch_size}x{seq}"] = {
                    v: {
                        "median_ms": round(1000 * statistics.median(t), 2),
                        "p90_ms": round(1000 * float(np.quantile(t, 0.9)), 2),
                        "runs": len(t),
                    }
                    for v, t in times.items()
                }
                log(f"{name} {batch_size}x{seq}: {len(times['ov-int8'])} rounds")
            del runners, model
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["ratios"] = ratios(report["latency"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from update_readme import render_bench_openvino

    print(render_bench_openvino(report))
    print(f"\nwrote {args.json} ({report['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
