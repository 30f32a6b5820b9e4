"""`qtool quantize` against the peers' one-call INT8, in one run: fidelity, accuracy, wall time
and latency, on the held-out test split.

    python scripts/bench_quantize.py                 # writes docs/results/quantize.json
    python scripts/bench_quantize.py --runtimes onnxruntime --test-limit 500   # a quick look

The model is the fine-tuned MiniLM of recipes/minilm-rt-sentiment.yaml (run `qtool data
prepare rt-sentiment` and `qtool finetune -r recipes/minilm-rt-sentiment.yaml` first); every
row uses the same 512 calibration sentences (data/rt-sentiment/calib.jsonl) and is scored on
the same test sentences (data/rt-sentiment/test.jsonl, never used for a choice). Rows:

* fp32: model.fp32.onnx on ONNX Runtime, the reference every agreement is counted against;
* ORT `quantize_dynamic` (INT8 weights, activations quantized at run time): its defaults, and
  with `per_channel=True`, the better of the two on the dev split (600 sentences) by agreement
  with fp32 (measured here: 77% with the defaults, 99% per channel; `reduce_range` 59%);
* NNCF `nncf.quantize(model_type=TRANSFORMER)` on OpenVINO (its recommended transformer
  settings: SmoothQuant + fast bias correction), on the same fp32 ONNX;
* qtool's old default: `qtool calibrate` (percentile, every residual add) + `export-onnx`;
* `qtool quantize --runtime R` for each runtime, run as a user runs it (one process, its own
  report and latency check included in the wall time).

Wall times are whole processes (`python -c ...` / `qtool ...`, process start included); NNCF's
excludes the fp32 ONNX export it starts from. Latency is interleaved (round robin, order
rotated) per shape with `--threads` threads: on OpenVINO qtool's openvino model against
NNCF's, on ONNX Runtime qtool's onnxruntime model against `quantize_dynamic` and fp32, each
ratio with a bootstrap interval over rounds. Agreement and accuracy differences carry paired
bootstrap 95% intervals over test sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_openvino import encode, ensure_nncf, padded_feed  # noqa: E402 - sibling script

RUNTIMES = ("onnxruntime", "openvino", "tensorrt")
QTOOL = [sys.executable, "-m", "qtoolkit.cli"]

NNCF_SCRIPT = """
import json, sys, numpy as np, nncf, openvino as ov
from transformers import AutoTokenizer
fp32, calib, out = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(sys.argv[4])
rows = []
for line in open(calib):
    enc = tok(json.loads(line)["text"], truncation=True, max_length=128, return_tensors="np")
    rows.append({k: v.astype(np.int64) for k, v in enc.items()})
model = ov.Core().read_model(fp32)
q = nncf.quantize(model, nncf.Dataset(rows), model_type=nncf.ModelType.TRANSFORMER,
                  subset_size=len(rows))
ov.save_model(q, out)
"""

DYNAMIC_SCRIPT = """
import sys
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8,
                 per_channel=sys.argv[3] == "per_channel")
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(argv: list[str], what: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    log(f"{what}: {seconds:.1f}s")
    return seconds


def predictions(runner, tokenizer, examples, batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        out.append(np.asarray(runner(encode(tokenizer, chunk, 128, "longest"))["logits"]))
    return np.concatenate(out).argmax(-1)


def fidelity(preds: dict, labels: np.ndarray) -> dict:
    from qtoolkit.tasks.intervals import agreement_interval, paired_bootstrap

    ref = preds["fp32"]
    ref_ok = (ref == labels).astype(float)
    rows = {}
    for name, p in preds.items():
        ok = (p == labels).astype(float)
        rows[name] = {
            "accuracy": round(float(ok.mean()), 6),
            "accuracy_vs_fp32": paired_bootstrap(ok, ref_ok).to_dict(),
            "agreement": agreement_interval(list(p), list(ref)).to_dict(),
        }
    return rows


def interleaved(calls: dict, rounds: int) -> dict[str, list[float]]:
    """Per-round medians (ms) of each call, round robin with the order rotated each round."""
    names = list(calls)
    for n in names:  # warm-up
        calls[n]()
        calls[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            chunk = []
            for _ in range(3):
                t = time.perf_counter()
                calls[n]()
                chunk.append((time.perf_counter() - t) * 1000)
            times[n].append(statistics.median(chunk))
    return times


def latency_block(runners: dict, pairs: dict, tokenizer, sentences, shapes, rounds: int) -> dict:
    from qtoolkit.tasks.intervals import speedup_interval

    block = {}
    for batch, seq in shapes:
        feed = padded_feed(tokenizer, sentences, batch, seq)
        calls = {}
        for name, r in runners.items():
            inputs = {k: v for k, v in feed.items() if k in r.input_names}
            calls[name] = r.prepare(inputs)
        times = interleaved(calls, rounds)
        shape = f"{batch}x{seq}"
        block[shape] = {
            "median_ms": {n: round(statistics.median(t), 3) for n, t in times.items()},
            "ratios": {
                label: speedup_interval(times[slow], times[fast]).to_dict()
                for label, (slow, fast) in pairs.items()
            },
        }
        log(
            f"{shape}: " + ", ".join(f"{n} {statistics.median(t):.2f} ms" for n, t in times.items())
        )
    return block


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/minilm-rt-sentiment/finetuned")
    ap.add_argument("--calib", default="data/rt-sentiment/calib.jsonl")
    ap.add_argument("--test", default="data/rt-sentiment/test.jsonl")
    ap.add_argument("--dev", default="data/rt-sentiment/dev.jsonl")
    ap.add_argument("--dev-limit", type=int, default=600)
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", default="docs/results/quantize.json")
    args = ap.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]

    import torch

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.data import read_data_examples
    from qtoolkit.fsutil import write_json
    from qtoolkit.recipe import DataConfig
    from qtoolkit.runtime.ort_runner import OrtRunner
    from qtoolkit.runtime.ov_runner import OpenVinoRunner

    nncf_version = ensure_nncf()
    work = Path(tempfile.mkdtemp(prefix="bench_quantize."))
    model = Path(args.model)
    wall: dict[str, float] = {}
    paths: dict[str, Path] = {}
    reports: dict[str, dict] = {}

    # qtool quantize, one process per runtime, as a user runs it.
    for runtime in runtimes:
        out = work / f"quantize-{runtime}"
        wall[f"qtool quantize --runtime {runtime}"] = timed(
            [*QTOOL, "quantize", str(model), "--calib-file", args.calib, "--runtime", runtime,
             "-o", str(out), "--set", f"quantize.threads={args.threads}"],
            f"qtool quantize --runtime {runtime}",
        )  # fmt: skip
        paths[f"qtool-{runtime}"] = out / "model.onnx"
        reports[runtime] = json.loads((out / "report.json").read_text())
    fp32_onnx = (work / f"quantize-{runtimes[0]}") / "model.fp32.onnx"
    paths["fp32"] = fp32_onnx

    # qtool's old default: calibrate (percentile, residual adds quantized) + export-onnx.
    old = work / "old"
    old_recipe = ["--set", f"output_dir={old}", "--set", "export.target=onnxruntime"]
    wall["qtool calibrate + export-onnx (old default)"] = timed(
        [*QTOOL, "calibrate", "--model", str(model), "--calib-file", args.calib, *old_recipe],
        "qtool calibrate (old default)",
    ) + timed(
        [*QTOOL, "export-onnx", "--calib-file", args.calib, *old_recipe],
        "qtool export-onnx (old default)",
    )
    paths["qtool-old-default"] = old / "export" / "model.onnx"

    # The peers, one call each, on the same fp32 ONNX and calibration sentences.
    nncf_out = work / "nncf" / "model.xml"
    nncf_out.parent.mkdir()
    wall["nncf.quantize (TRANSFORMER)"] = timed(
        [sys.executable, "-c", NNCF_SCRIPT, str(fp32_onnx), args.calib, str(nncf_out), str(model)],
        "nncf.quantize",
    )
    paths["nncf"] = nncf_out
    for name, mode in (("quantize_dynamic", "defaults"), ("quantize_dynamic-pc", "per_channel")):
        dynamic = work / f"{name}.onnx"
        wall[WALL[name]] = timed(
            [sys.executable, "-c", DYNAMIC_SCRIPT, str(fp32_onnx), str(dynamic), mode], name
        )
        paths[name] = dynamic

    # Fidelity on the test split.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    examples = read_data_examples(args.test, DataConfig(), args.test_limit)
    labels = np.array([int(e.label) for e in examples])
    t = args.threads
    runners = {
        "fp32": OrtRunner(fp32_onnx, t),
        "quantize_dynamic": OrtRunner(paths["quantize_dynamic"], t),
        "quantize_dynamic-pc": OrtRunner(paths["quantize_dynamic-pc"], t),
        "nncf": OpenVinoRunner(nncf_out, t),
        "qtool-old-default": OrtRunner(paths["qtool-old-default"], t),
    }
    for runtime in runtimes:
        path = paths[f"qtool-{runtime}"]
        runners[f"qtool-{runtime}"] = (
            OpenVinoRunner(path, t) if runtime == "openvino" else OrtRunner(path, t)
        )
    preds = {}
    for name, runner in runners.items():
        preds[name] = predictions(runner, tokenizer, examples)
        log(f"{name}: accuracy {np.mean(preds[name] == labels):.4f}")
    table = fidelity(preds, labels)

    # The peer's options compared where a user would choose them: on dev, not test.
    dev = read_data_examples(args.dev, DataConfig(), args.dev_limit)
    dev_ref = predictions(runners["fp32"], tokenizer, dev)
    peer_dev = {
        name: round(float(np.mean(predictions(runners[name], tokenizer, dev) == dev_ref)), 4)
        for name in ("quantize_dynamic", "quantize_dynamic-pc")
    }
    log(f"quantize_dynamic dev agreement: {peer_dev}")

    # Latency, interleaved per shape, per runtime.
    sentences = examples[:64]
    shapes = [(1, 128), (32, 64)]
    latency = {}
    if "openvino" in runtimes:
        ov = {
            "ov-fp32": OpenVinoRunner(fp32_onnx, t, "f32"),
            "ov-default": OpenVinoRunner(fp32_onnx, t),
            "nncf": runners["nncf"],
            "qtool-openvino": runners["qtool-openvino"],
        }
        latency["openvino"] = {
            "precisions": {n: r.precision for n, r in ov.items()},
            "shapes": latency_block(
                ov,
                {
                    "qtool-openvino / nncf": ("nncf", "qtool-openvino"),
                    "qtool-openvino / ov-default": ("ov-default", "qtool-openvino"),
                    "nncf / ov-default": ("ov-default", "nncf"),
                },
                tokenizer,
                sentences,
                shapes,
                args.rounds,
            ),
        }
    if "onnxruntime" in runtimes:
        ort = {
            "fp32": runners["fp32"],
            "quantize_dynamic": runners["quantize_dynamic"],
            "quantize_dynamic-pc": runners["quantize_dynamic-pc"],
            "qtool-onnxruntime": runners["qtool-onnxruntime"],
        }
        latency["onnxruntime"] = {
            "precisions": {n: r.precision for n, r in ort.items()},
            "shapes": latency_block(
                ort,
                {
                    "qtool-onnxruntime / quantize_dynamic": (
                        "quantize_dynamic",
                        "qtool-onnxruntime",
                    ),
                    "qtool-onnxruntime / fp32": ("fp32", "qtool-onnxruntime"),
                    "qtool-onnxruntime / quantize_dynamic-pc": (
                        "quantize_dynamic-pc",
                        "qtool-onnxruntime",
                    ),
                    "quantize_dynamic / fp32": ("fp32", "quantize_dynamic"),
                    "quantize_dynamic-pc / fp32": ("fp32", "quantize_dynamic-pc"),
                },
                tokenizer,
                sentences,
                shapes,
                args.rounds,
            ),
        }
    result = {
        "what": "qtool quantize vs the peers' one-call INT8: fidelity on test, wall, latency",
        "model": str(model),
        "calib_file": args.calib,
        "test_file": args.test,
        "num_test": len(examples),
        "nncf": nncf_version,
        "machine": machine_info(args.threads),
        "torch_threads": torch.get_num_threads(),
        "interval": "95% bootstrap: over test sentences (fidelity), over rounds (latency)",
        "fidelity": table,
        "peer_dev_agreement": {"examples": len(dev), **peer_dev},
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        "latency": latency,
        "quantize_reports": {
            r: {
                "chosen": rep["chosen"]["label"],
                "candidates": [
                    {"label": c["label"], "kl": c["kl"], "agreement": c["agreement"]}
                    for c in rep["candidates"]
                ],
                "gemms": rep["gemms"],
                "search_seconds": rep["search_seconds"],
                "seconds": rep["seconds"],
            }
            for r, rep in reports.items()
        },
    }
    write_json(ROOT / args.json, result)
    print(f"{'row':28s} {'agreement with fp32':>28s} {'accuracy':>9s} {'vs fp32 (points)':>22s}")
    for name, row in table.items():
        a = row["agreement"]
        d = row["accuracy_vs_fp32"]
        print(
            f"{name:28s} {100 * a['value']:8.2f}% [{100 * a['low']:.2f}, {100 * a['high']:.2f}]  "
            f"{100 * row['accuracy']:8.2f} {100 * d['value']:+6.2f} [{100 * d['low']:+.2f}, "
            f"{100 * d['high']:+.2f}]"
        )
    for name, seconds in wall.items():
        print(f"wall {name}: {seconds:.1f}s")
    for runtime, block in latency.items():
        for shape, row in block["shapes"].items():
            for label, r in row["ratios"].items():
                lo, hi = r["low"], r["high"]
                print(f"{runtime} {shape} {label}: {r['value']:.2f}x [{lo:.2f}, {hi:.2f}]")
    log(f"wrote {args.json}")


LABELS = {
    "fp32": "fp32 (ONNX Runtime)",
    "quantize_dynamic": "ORT `quantize_dynamic`, defaults (one call)",
    "quantize_dynamic-pc": "ORT `quantize_dynamic`, `per_channel=True` (its best on dev)",
    "nncf": "NNCF `nncf.quantize`, TRANSFORMER (OpenVINO)",
    "qtool-old-default": "qtool calibrate + export-onnx, old defaults (2 commands)",
    "qtool-onnxruntime": "**`qtool quantize --runtime onnxruntime`**",
    "qtool-openvino": "**`qtool quantize --runtime openvino`** (on OpenVINO)",
    "qtool-tensorrt": "**`qtool quantize --runtime tensorrt`** (checked on ONNX Runtime)",
}
SHORT = {
    "nncf": "NNCF",
    "quantize_dynamic": "quantize_dynamic (defaults)",
    "quantize_dynamic-pc": "quantize_dynamic (per channel)",
}
FLOAT_REF = {"openvino": "ov-default", "onnxruntime": "fp32"}
FLOAT_NAME = {
    "ov-default": "OpenVINO's default precision (bf16 where the CPU has it)",
    "fp32": "fp32 on ONNX Runtime",
}
WALL = {
    "quantize_dynamic": "ORT quantize_dynamic",
    "quantize_dynamic-pc": "ORT quantize_dynamic per_channel",
    "nncf": "nncf.quantize (TRANSFORMER)",
    "qtool-old-default": "qtool calibrate + export-onnx (old default)",
    "qtool-onnxruntime": "qtool quantize --runtime onnxruntime",
    "qtool-openvino": "qtool quantize --runtime openvino",
    "qtool-tensorrt": "qtool quantize --runtime tensorrt",
}


def _ci(d: dict, points: bool = False) -> str:
    from qtoolkit.tasks.compare import delta_cell
    from qtoolkit.tasks.intervals import Interval

    return delta_cell({"delta": d}) if points else Interval(**d).percent()


def render(data: dict) -> str:
    """The headline table (fidelity, accuracy, wall time) and the latency ratios."""
    lines = [
        "| INT8 from | agreement with fp32 | accuracy | Δ vs fp32 (points) | wall time |",
        "|---|---|---:|---|---:|",
    ]
    for name, row in data["fidelity"].items():
        wall = data["wall_seconds"].get(WALL.get(name, ""), None)
        delta = "" if name == "fp32" else _ci(row["accuracy_vs_fp32"], True)
        agree = "" if name == "fp32" else _ci(row["agreement"])
        lines.append(
            f"| {LABELS.get(name, name)} | {agree} | {100 * row['accuracy']:.2f} | {delta} | "
            + (f"{wall:.0f} s |" if wall is not None else "|")
        )
    lines += [
        "",
        "Speed-ups (median latency ratio, 95% interval over interleaved rounds; above 1: the "
        "first is faster):",
        "",
        "| runtime | shape | qtool / peer | qtool / float | peer / float |",
        "|---|---|---|---|---|",
    ]

    def cell(ratios: dict, label: str) -> str:
        r = ratios.get(label)
        return "-" if r is None else f"{r['value']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]"

    for runtime, block in data["latency"].items():
        qtool, base = f"qtool-{runtime}", FLOAT_REF.get(runtime, "fp32")
        peers = [n for n in block["precisions"] if n not in (qtool, base, "ov-fp32")]
        for shape, row in block["shapes"].items():
            for peer in peers:
                lines.append(
                    f"| {runtime} | {shape} | vs {SHORT.get(peer, peer)}: "
                    f"{cell(row['ratios'], f'{qtool} / {peer}')} | "
                    f"{cell(row['ratios'], f'{qtool} / {base}')} | "
                    f"{cell(row['ratios'], f'{peer} / {base}')} |"
                )
    lines.append(
        "\nFloat: "
        + "; ".join(f"{r} {FLOAT_NAME[FLOAT_REF.get(r, 'fp32')]}" for r in data["latency"])
        + "."
    )
    precisions = data["latency"].get("openvino", {}).get("precisions")
    if precisions:
        lines += [
            "",
            "OpenVINO precisions: " + ", ".join(f"{k} {v}" for k, v in precisions.items()),
        ]
    peer = data.get("peer_dev_agreement")
    if peer:
        lines += [
            "",
            f"`quantize_dynamic`'s option is chosen on dev ({peer['examples']} sentences, "
            f"agreement with fp32): defaults {100 * peer['quantize_dynamic']:.2f}%, "
            f"`per_channel=True` {100 * peer['quantize_dynamic-pc']:.2f}%.",
        ]
    lines += [
        "",
        f"{data['num_test']} test sentences (never used to choose); intervals: {data['interval']}. "
        "Wall times are whole processes, process start included; NNCF's starts from the fp32 "
        "ONNX that qtool exported.",
        "",
        f"NNCF {data['nncf']}, OpenVINO {data['machine']['versions'].get('openvino')}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
