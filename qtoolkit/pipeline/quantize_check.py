"""`qtool quantize`'s last steps: write the export folder, then check fp32 against INT8 on the
runtime the model is for (agreement with its interval, accuracy with labels, latency, size) and,
for TensorRT, build and time the engines where a GPU is present or write the trtexec command.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import EXPORT_FILE, QUANTIZED_SUBDIR, fp32_path_for
from qtoolkit.errors import QtoolError

__all__ = ["check_on_runtime", "export_folder", "tensorrt_step"]

TRTEXEC_SCRIPT = "trtexec.sh"


def export_folder(model, tokenizer, folder: Path, recipe, split, fallback) -> dict[str, Any]:
    """The quantized checkpoint, model.onnx (runtime layout) and model.fp32.onnx, validated
    against PyTorch, with the tokenizer and config: what `qtool evaluate`/`benchmark` read."""
    from qtoolkit.export import export_onnx
    from qtoolkit.export.api import effective_quant_config
    from qtoolkit.quant import save_quantized

    skip = fallback["skip"] if fallback else []
    quant_cfg = recipe.quant.model_copy(update={"skip": [*recipe.quant.skip, *skip]})
    save_quantized(
        model,
        tokenizer,
        folder / QUANTIZED_SUBDIR,
        quant_cfg,
        info={
            "stage": "quantize",
            "source_model": recipe.model.path,
            "runtime": recipe.quantize.runtime,
            "calib_file": str(recipe.data.calib_file),
            "num_samples": split.num_range,
        },
    )
    wanted, batches = recipe.export.num_samples, []
    for batch in split.range_batches:
        if sum(int(b["input_ids"].shape[0]) for b in batches) >= wanted:
            break
        batches.append(batch)
    cfg = recipe.export.model_copy(update={"fp32_baseline": True})
    result = export_onnx(
        model, folder / EXPORT_FILE, cfg, batches, effective_quant_config(model, quant_cfg)
    )
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    fp32 = result.fp32_validation
    return {
        "architecture": result.architecture,
        "target": result.target,
        "opset": result.opset,
        "seconds": result.seconds,
        "summary": result.summary(),
        "validation": result.validation.summary(),
        "validation_report": result.validation.to_dict(),
        "fp32_validation_report": fp32.to_dict() if fp32 is not None else None,
        "tensorrt_violations": [str(v) for v in result.violations],
        "op_counts": result.op_counts,
        "ort_census": result.ort_census.summary() if result.ort_census is not None else None,
        "size_mib": _mib(folder / EXPORT_FILE),
        "fp32_size_mib": _mib(fp32_path_for(folder / EXPORT_FILE)),
    }


def _mib(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 2)


def _runtime_for(preset) -> tuple[str, str | None]:
    """The runtime to check on, and why another one is used when it cannot run here."""
    runtime = preset.check_runtime
    if runtime == "openvino":
        from qtoolkit.runtime.ov_runner import openvino_missing

        missing = openvino_missing()
        if missing is not None:
            return "onnxruntime", f"OpenVINO is not installed ({missing}): checked on ONNX Runtime"
    return runtime, None


def _open(path: Path, recipe, runtime: str, precision: str, inference_precision=None):
    from qtoolkit.runtime import RuntimeOptions, open_target

    options = RuntimeOptions(
        threads=recipe.quantize.threads,
        precision=precision,
        inference_precision=inference_precision,
    )
    return open_target(path, recipe, runtime=runtime, options=options)


def check_on_runtime(folder: Path, recipe, preset, test, split) -> dict[str, Any]:
    """fp32 (model.fp32.onnx) against INT8 (model.onnx) on the preset's runtime."""
    runtime, notice = _runtime_for(preset)
    float_precision = "f32" if runtime == "openvino" else None
    int8 = _open(folder / EXPORT_FILE, recipe, runtime, "int8")
    fp32 = _open(fp32_path_for(folder / EXPORT_FILE), recipe, runtime, "fp32", float_precision)
    result: dict[str, Any] = {"runtime": runtime, "notices": [notice] if notice else []}
    result["fidelity"] = _fidelity(int8.runner, fp32.runner, test, split, recipe)
    result["int8_precision"] = int8.runner.precision
    result["fp32_precision"] = fp32.runner.precision
    if recipe.quantize.latency:
        runners = {"fp32": fp32.runner, "int8": int8.runner}
        if runtime == "openvino":
            default = _open(fp32_path_for(folder / EXPORT_FILE), recipe, runtime, "fp32")
            if default.runner.precision != fp32.runner.precision:
                runners = {"fp32": fp32.runner, "default": default.runner, "int8": int8.runner}
        result["latency"] = _latency(runners, int8, recipe)
    return result


def _fidelity(int8, fp32, test, split, recipe) -> dict[str, Any]:
    from qtoolkit.tasks.evaluation import output_decisions
    from qtoolkit.tasks.intervals import agreement_interval, paired_bootstrap

    if test is not None:
        m8, p8, _ = test.run(int8, "INT8 (test file)")
        m32, p32, _ = test.run(fp32, "fp32 (test file)")
        p8, p32 = _as_list(p8), _as_list(p32)
        figures: dict[str, Any] = {
            "on": str(recipe.data.test_file),
            "examples": test.num_examples,
            "agreement": agreement_interval(p8, p32).to_dict(),
            "metrics_int8": m8,
            "metrics_fp32": m32,
        }
        labels = _labels(test)
        if labels is not None and len(labels) == len(p8):
            ok8 = [float(a == b) for a, b in zip(p8, labels, strict=True)]
            ok32 = [float(a == b) for a, b in zip(p32, labels, strict=True)]
            figures["accuracy_difference"] = paired_bootstrap(ok8, ok32).to_dict()
        return figures
    out8 = [int8(b) for b in split.holdout_batches]
    out32 = [fp32(b) for b in split.holdout_batches]
    d8, d32 = output_decisions(out8), output_decisions(out32)
    return {
        "on": "held-out calibration slice (also used to choose: optimistic; pass --test-file)",
        "examples": split.num_holdout,
        "agreement": agreement_interval(d8, d32).to_dict(),
    }


def _as_list(preds: Any) -> list:
    return [preds[k] for k in sorted(preds)] if isinstance(preds, dict) else list(preds)


def _labels(evaluator) -> list | None:
    labels = getattr(evaluator.data, "labels", None)
    return None if labels is None else [int(x) for x in labels]


def _latency(runners: dict, opened, recipe) -> list[dict[str, Any]]:
    """Interleaved rounds per shape; medians and the INT8 speed-up over each float row with a
    bootstrap interval over rounds."""
    from qtoolkit.bench.backends import RunnerTimer
    from qtoolkit.bench.latency import chunks, rounds_for, time_shape
    from qtoolkit.pipeline.benchmark import feeds_maker
    from qtoolkit.tasks.intervals import speedup_interval

    cfg = recipe.quantize
    shapes = cfg.latency_shapes
    bench = recipe.bench.model_copy(
        update={
            "batch_sizes": sorted({b for b, _ in shapes}),
            "seq_lengths": sorted({s for _, s in shapes}),
        }
    )
    make_feeds, _ = feeds_maker([opened], recipe.model_copy(update={"bench": bench}))
    timers = {name: RunnerTimer(r) for name, r in runners.items()}
    iterations = cfg.latency_iterations
    rows = []
    for batch, seq in shapes:
        times = time_shape(timers, make_feeds(batch, seq), min(3, iterations), iterations)
        sizes = chunks(iterations, rounds_for(iterations))
        per_round: dict[str, list[float]] = {}
        for name, values in times.items():
            if isinstance(values, str):
                raise QtoolError(f"timing {name} at {batch}x{seq} failed: {values}")
            cuts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
            per_round[name] = [
                statistics.median(values[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)
            ]
        row: dict[str, Any] = {"batch": batch, "seq": seq}
        for name, values in times.items():
            row[f"{name}_ms"] = round(statistics.median(values), 3)
        for name in runners:
            if name != "int8":
                row[f"speedup_vs_{name}"] = speedup_interval(
                    per_round[name], per_round["int8"]
                ).to_dict()
        row["precisions"] = {name: r.precision for name, r in runners.items()}
        rows.append(row)
    return rows


def tensorrt_step(folder: Path, final_dir: Path, recipe) -> dict[str, Any]:
    """With TensorRT and a GPU here: build INT8 and FP16 engines and time them. Without: the
    trtexec commands (TensorRT 10 and 11) in trtexec.sh, and one line saying so."""
    from qtoolkit.engine import environment

    if environment.installed_tensorrt_version() and environment.cuda_device_names():
        from qtoolkit.pipeline.quantize_trt import build_and_time

        return build_and_time(folder, recipe)
    script = _write_trtexec(folder, final_dir, recipe)
    return {
        "built": False,
        "why": "no NVIDIA GPU with TensorRT here",
        "trtexec_script": script,
    }


def _write_trtexec(folder: Path, final_dir: Path, recipe) -> str:
    from qtoolkit.engine.plan import DRY_RUN_VERSIONS, plan_build
    from qtoolkit.engine.profiles import read_onnx

    onnx = read_onnx(folder / EXPORT_FILE)
    lines = ["#!/bin/sh", "# Build the TensorRT engine of this INT8 model (run on the GPU host)."]
    for version in DRY_RUN_VERSIONS:
        plan = plan_build(
            final_dir / EXPORT_FILE, final_dir / "model.engine", recipe.engine, version, onnx=onnx
        )
        lines.append(f"# TensorRT {version}: {plan.precision.note}")
        lines += [f"# warning: {w}" for w in plan.precision.warnings]
        lines.append(("" if version == DRY_RUN_VERSIONS[-1] else "# ") + plan.trtexec_command)
    path = folder / TRTEXEC_SCRIPT
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return TRTEXEC_SCRIPT
