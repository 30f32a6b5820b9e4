"""BERT-base TensorRT latency, INT8 (qtool QDQ export) vs FP16, at batch 128 x seq 128.

Random weights (latency does not depend on them; no checkpoint is downloaded): BERT-base shape
(12 layers, hidden 768), max-calibrated on two random batches, exported by qtool, built by
qtool build-engine's code and timed with CUDA events. Anchor: TensorRT's demo/BERT on A100,
8.02 ms INT8 vs 15.15 ms FP16 (1.89x). Run by scripts/gpu_check.sh; needs a GPU and TensorRT.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

BATCH, SEQ = 128, 128


def _batch(rows: int, seq: int, vocab: int, seed: int) -> dict:
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (rows, seq), generator=gen)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()

    import onnx
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from qtoolkit.engine import EngineRunner, build_engine, installed_tensorrt_version
    from qtoolkit.engine.precision import parse_trt_version
    from qtoolkit.export import export_onnx, fp32_path_for
    from qtoolkit.export.fp16 import convert_to_fp16
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.recipe import CalibConfig, EngineConfig, ExportConfig, QuantConfig

    trt_major = parse_trt_version(installed_tensorrt_version() or "10")[0]
    fp16_export = trt_major >= 11  # TensorRT 11 takes fp16 only from the ONNX
    torch.manual_seed(0)
    config = BertConfig(num_labels=2, attn_implementation="eager")
    model = BertForSequenceClassification(config).eval()
    insert_quantizers(model, QuantConfig())
    model.cuda()
    calib = [{k: v.cuda() for k, v in _batch(8, SEQ, config.vocab_size, s).items()} for s in (0, 1)]
    with torch.no_grad():
        calibrate(model, lambda m: [m(**b) for b in calib], CalibConfig(method="max"))
    sample = [_batch(2, SEQ, config.vocab_size, 2)]
    engine_cfg = EngineConfig(
        min_shape=(1, SEQ), opt_shape=(BATCH, SEQ), max_shape=(BATCH, SEQ), workspace_mib=8192
    )
    result: dict = {"batch": BATCH, "seq": SEQ, "tensorrt_major": trt_major, "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        exported = export_onnx(
            model,
            tmp / "int8.onnx",
            ExportConfig(
                fp16=fp16_export,
                fp32_baseline=True,
                # latency only: random weights, so no accuracy gate on the export
                atol=1e3,
                fp16_atol=1e3,
                min_argmax_agreement=0.0,
            ),
            sample,
        )
        result["export_seconds"] = round(time.perf_counter() - t0, 1)
        float_onnx = fp32_path_for(exported.path)
        if fp16_export:  # the float baseline in fp16 for TensorRT 11; TensorRT 10 uses --fp16
            fp16_path = tmp / "fp16.onnx"
            onnx.save(convert_to_fp16(onnx.load(str(float_onnx))), str(fp16_path))
            float_onnx = fp16_path
        feeds = {k: v.numpy() for k, v in _batch(BATCH, SEQ, config.vocab_size, 3).items()}
        for name, path in (("int8", exported.path), ("fp16", float_onnx)):
            build = build_engine(path, tmp / f"{name}.engine", engine_cfg)
            runner = EngineRunner(build.engine_path)
            timed = runner.benchmark(feeds, warmup=20, iterations=args.iterations)
            result["engines"][name] = {
                "median_ms": round(timed.median_ms, 3),
                "build_seconds": round(build.report.build_seconds, 1),
                "layers": build.report.layers.get("by_precision"),
                "note": build.report.plan.precision.note,
            }
            print(f"{name}: {timed.median_ms:.2f} ms median at {BATCH}x{SEQ}", flush=True)
            del runner
    engines = result["engines"]
    result["fp16_over_int8"] = round(engines["fp16"]["median_ms"] / engines["int8"]["median_ms"], 3)
    result["anchor"] = "TensorRT demo/BERT, A100, BERT-base 128x128: 8.02 ms INT8, 15.15 ms FP16"
    print(f"FP16 / INT8 = {result['fp16_over_int8']}x (anchor 1.89x on A100)")
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
