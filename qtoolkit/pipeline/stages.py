"""The stages `qtool run` knows, in pipeline order: each a plain `fn(recipe) -> outcome`, and
what each one reads, writes and builds on (which decides when it is up to date)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import Kind, check_not_inputs, check_output_dir, kind_of
from qtoolkit.errors import QtoolError
from qtoolkit.pipeline.benchmark import run_benchmark
from qtoolkit.pipeline.calibrate import run_calibrate
from qtoolkit.pipeline.export import run_export
from qtoolkit.pipeline.finetune import run_finetune
from qtoolkit.pipeline.qat import run_qat
from qtoolkit.pipeline.sweep import run_ptq_sweep
from qtoolkit.recipe import Recipe

__all__ = [
    "DEFAULT_STAGES",
    "STAGE_DEPS",
    "STAGE_ORDER",
    "StageDeps",
    "StageFn",
    "build_engine_stage",
    "check_stage_outputs",
    "ptq_sweep_stage",
]

StageFn = Callable[[Recipe], Any]
STAGE_ORDER = tuple("finetune calibrate ptq-sweep qat export-onnx build-engine benchmark".split())


def ptq_sweep_stage(recipe: Recipe) -> Any:
    from qtoolkit.quant.calib.registry import CALIB_METHODS

    return run_ptq_sweep(recipe, list(CALIB_METHODS))


def build_engine_stage(recipe: Recipe) -> Any:
    from qtoolkit.artifacts import ENGINE_FILE, EXPORT_FILE
    from qtoolkit.engine import build_engine

    onnx_path = recipe.stage_dir("export") / EXPORT_FILE
    if not onnx_path.is_file():
        raise QtoolError(f"no ONNX model to build an engine from: {onnx_path}")
    return build_engine(onnx_path, recipe.stage_dir("engine") / ENGINE_FILE, recipe.engine)


DEFAULT_STAGES: dict[str, StageFn] = {
    "finetune": run_finetune,
    "calibrate": run_calibrate,
    "ptq-sweep": ptq_sweep_stage,
    "qat": run_qat,
    "export-onnx": run_export,
    "build-engine": build_engine_stage,
    "benchmark": run_benchmark,
}


@dataclass(frozen=True)
class StageDeps:
    """What a stage reads (recipe sections or section.field; *_file fields are hashed), the
    stage folders it writes (the stamp goes into the first) and the stages it builds on."""

    reads: str
    outputs: str
    after: str = ""
    needs_gpu: bool = False


_TEXT = "data.max_length data.pad_to_max_length data.text_field data.text_pair_field "
_TEXT += "data.label_field data.doc_stride"
STAGE_DEPS = {
    "finetune": StageDeps(
        f"seed model finetune data.train_file data.eval_file {_TEXT}", "finetuned"
    ),
    "calibrate": StageDeps(
        f"seed model quant calib data.calib_file {_TEXT}", "calibrated", "finetune"
    ),
    "ptq-sweep": StageDeps(
        f"seed model quant calib data.calib_file data.eval_file data.test_file {_TEXT}",
        "calibrated ptq_sweep",
        "finetune",
    ),
    "qat": StageDeps(
        f"seed model quant calib qat data.train_file data.eval_file {_TEXT}",
        "qat",
        "finetune calibrate ptq-sweep",
    ),
    "export-onnx": StageDeps(
        f"model export data.calib_file {_TEXT}", "export", "calibrate ptq-sweep qat"
    ),
    "build-engine": StageDeps("engine", "engine", "export-onnx", needs_gpu=True),
    "benchmark": StageDeps(
        f"seed model bench data.calib_file data.test_file data.eval_batch_size {_TEXT}",
        "bench",
        " ".join(STAGE_ORDER[:-1]),
    ),
}


# The artifact kind of each stage's first output folder (build-engine writes plain files).
STAGE_KINDS = {
    "finetune": Kind.FLOAT,
    "calibrate": Kind.QUANTIZED,
    "ptq-sweep": Kind.QUANTIZED,
    "qat": Kind.QUANTIZED,
    "export-onnx": Kind.ONNX,
    "benchmark": Kind.BENCH,
}


def check_stage_outputs(recipe: Recipe, names: list[str]) -> None:
    """Before the first stage runs: no stage may write over an input (model, tokenizer, data
    files), over a qtool output of another kind, or into a folder another kind of stage writes.
    (Each stage checks its own folder fully, a user's folder or files included, before its own
    work.)"""
    d = recipe.data
    inputs = [recipe.model.path, recipe.model.tokenizer]
    inputs += [d.calib_file, d.train_file, d.eval_file, d.test_file]
    writers: dict[Path, tuple[str, Kind]] = {}
    for name in names:
        if name not in STAGE_KINDS:
            continue
        kind = STAGE_KINDS[name]
        folder = recipe.stage_dir(STAGE_DEPS[name].outputs.split()[0])
        other = writers.setdefault(folder.resolve(), (name, kind))
        if other[1] is not kind:
            raise QtoolError(
                f"stages {other[0]} and {name} would both write {folder}; give them different "
                "output_dir settings"
            )
        check_not_inputs(folder, inputs)
        found = kind_of(folder)
        if found is not None and found is not kind:  # a qtool output of another kind
            check_output_dir(folder, kind)
