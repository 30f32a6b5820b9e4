"""`qtool quantize --runtime tensorrt` on a machine with an NVIDIA GPU and TensorRT: build the
INT8 engine and an FP16 engine of the same model, time them side by side, and say plainly
when INT8 is not worth shipping (ModelOpt 0.47 refuses an INT8 placement below 1.02x FP16).

TensorRT 10 builds both from the fp32 ONNX files with its precision flags (FP16 on, INT8 from
the Q/DQ). TensorRT 11 is strongly typed: both are built from fp16 copies of the ONNX files
(Q/DQ scales stay fp32), or its float layers would run in fp32.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import EXPORT_FILE, fp32_path_for

__all__ = ["MIN_INT8_SPEEDUP", "build_and_time", "engine_config_for"]

MIN_INT8_SPEEDUP = 1.02  # below this, INT8 is reported as no faster than FP16
ENGINE_DIR = "engine"


def engine_config_for(recipe):
    """The recipe's engine settings with the profile widened to every timed shape."""
    shapes = recipe.quantize.latency_shapes
    cfg = recipe.engine
    top_b = max([cfg.max_shape[0], *(b for b, _ in shapes)])
    top_s = max([cfg.max_shape[1], *(s for _, s in shapes)])
    low_b = min([cfg.min_shape[0], *(b for b, _ in shapes)])
    low_s = min([cfg.min_shape[1], *(s for _, s in shapes)])
    opt = (min(max(cfg.opt_shape[0], low_b), top_b), min(max(cfg.opt_shape[1], low_s), top_s))
    return cfg.model_copy(
        update={"min_shape": (low_b, low_s), "opt_shape": opt, "max_shape": (top_b, top_s)}
    )


def _fp16_copy(path: Path, out: Path) -> Path:
    import onnx

    from qtoolkit.export.fp16 import convert_to_fp16
    from qtoolkit.export.save import write_onnx

    return write_onnx(convert_to_fp16(onnx.load(str(path))), out)


def build_and_time(folder: Path, recipe) -> dict[str, Any]:
    from qtoolkit.engine import environment
    from qtoolkit.engine.build import build_engine
    from qtoolkit.engine.precision import parse_trt_version
    from qtoolkit.engine.runtime import EngineRunner
    from qtoolkit.tasks.intervals import speedup_interval

    trt_version = environment.installed_tensorrt_version() or "?"
    engine_dir = folder / ENGINE_DIR
    engine_dir.mkdir(exist_ok=True)
    cfg = engine_config_for(recipe)
    int8_onnx, fp16_onnx = folder / EXPORT_FILE, fp32_path_for(folder / EXPORT_FILE)
    if parse_trt_version(trt_version)[0] >= 11:  # strongly typed: fp16 must be in the ONNX
        int8_onnx = _fp16_copy(int8_onnx, engine_dir / "model.fp16-int8.onnx")
        fp16_onnx = _fp16_copy(fp16_onnx, engine_dir / "model.fp16.onnx")
    else:
        cfg = cfg.model_copy(update={"fp16": True, "strongly_typed": None})
    int8 = build_engine(int8_onnx, engine_dir / "model.int8.engine", cfg)
    fp16 = build_engine(fp16_onnx, engine_dir / "model.fp16.engine", cfg)
    runners = {"int8": EngineRunner(int8.engine_path), "fp16": EngineRunner(fp16.engine_path)}
    rows = []
    for batch, seq in recipe.quantize.latency_shapes:
        feeds = _feeds(folder, runners["int8"].input_names, batch, seq)
        rounds: dict[str, list[float]] = {"int8": [], "fp16": []}
        for r in range(10):  # interleaved rounds, the order swapped each round
            order = ("int8", "fp16") if r % 2 == 0 else ("fp16", "int8")
            for name in order:
                run = runners[name].benchmark(feeds, warmup=3 if r == 0 else 1, iterations=10)
                rounds[name].append(run.median_ms)
        speedup = speedup_interval(rounds["fp16"], rounds["int8"])
        rows.append(
            {
                "batch": batch,
                "seq": seq,
                "int8_ms": round(statistics.median(rounds["int8"]), 4),
                "fp16_ms": round(statistics.median(rounds["fp16"]), 4),
                "speedup": speedup.to_dict(),
            }
        )
    slowest = min(r["speedup"]["value"] for r in rows)
    if slowest >= MIN_INT8_SPEEDUP:
        verdict = f"TensorRT {trt_version}: the INT8 engine is at least {slowest:.2f}x FP16's"
    else:
        verdict = (
            f"TensorRT {trt_version}: the INT8 engine is NOT faster than FP16 at every shape "
            f"(lowest {slowest:.2f}x, below {MIN_INT8_SPEEDUP}x): ship engine/model.fp16.engine, "
            "or look at where Q/DQ breaks TensorRT's fusions (qtool check-onnx)"
        )
    lines = ["| shape | INT8 ms | FP16 ms | INT8 vs FP16 |", "|---|---|---|---|"]
    for r in rows:
        s = r["speedup"]
        lines.append(
            f"| {r['batch']}x{r['seq']} | {r['int8_ms']:.3f} | {r['fp16_ms']:.3f} | "
            f"{s['value']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] |"
        )
    return {
        "built": True,
        "tensorrt": trt_version,
        "gpu": (environment.cuda_device_names() or ["?"])[0],
        "engines": {
            "int8": f"{ENGINE_DIR}/model.int8.engine",
            "fp16": f"{ENGINE_DIR}/model.fp16.engine",
        },
        "latency": rows,
        "int8_worth_it": slowest >= MIN_INT8_SPEEDUP,
        "verdict": verdict,
        "markdown": verdict + ".\n\n" + "\n".join(lines),
    }


def _feeds(folder: Path, names, batch: int, seq: int) -> dict:
    """Random in-vocabulary token ids of the model saved in `folder` (the engine casts them)."""
    import json

    from qtoolkit.bench.inputs import synthetic_feeds

    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    feeds = synthetic_feeds(vocab, batch, seq)
    return {n: feeds[n] for n in names}
