"""`qtool run`: every stage a recipe configures, in order, skipping those already up to date.

The stages and what each depends on are in `pipeline/stages.py`; the stamps that say a stage is
up to date in `pipeline/stamps.py`; what a run records (`StageRecord`, `RunOutcome`) in
`pipeline/run_records.py`; the manifest (`<output_dir>/run.json`) and report
(`<output_dir>/report.md`) in `pipeline/run_report.py`. This module decides which stages run
and runs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from qtoolkit.errors import QtoolError
from qtoolkit.pipeline.run_records import RunOutcome, StageRecord
from qtoolkit.pipeline.run_report import MANIFEST, REPORT, write_manifest, write_report
from qtoolkit.pipeline.stages import (
    DEFAULT_STAGES,
    STAGE_DEPS,
    STAGE_ORDER,
    StageFn,
    check_stage_outputs,
)
from qtoolkit.pipeline.stamps import STAMP, digest, now, recipe_value, stamped, write_stamp
from qtoolkit.recipe import Recipe

__all__ = [
    "DEFAULT_STAGES",
    "STAGE_ORDER",
    "STAMP",
    "RunOutcome",
    "StageRecord",
    "gpu_unavailable_reason",
    "run_pipeline",
    "select_stages",
]


def select_stages(recipe: Recipe, only: str | None = None) -> dict[str, str | None]:
    """stage -> None if it runs, else why not. `recipe.stages`, when set, lists them;
    otherwise every stage the recipe configures runs."""
    listed = [only] if only else recipe.stages
    if listed is not None:
        unknown = [s for s in listed if s not in STAGE_ORDER]
        if unknown:
            raise QtoolError(f"unknown stages {unknown} (stages: {', '.join(STAGE_ORDER)})")
        why = f"--only {only}" if only else "not in recipe.stages"
        return {s: None if s in listed else why for s in STAGE_ORDER}
    d = recipe.data
    quantizes = d.calib_file is not None or "qat" in recipe.model_fields_set
    return {
        "finetune": None if d.train_file else "no data.train_file",
        "calibrate": "no data.calib_file"
        if d.calib_file is None
        else ("ptq-sweep calibrates (data.test_file is set)" if d.test_file else None),
        "ptq-sweep": None if d.calib_file and d.test_file else "needs data.calib/test_file",
        "qat": None if "qat" in recipe.model_fields_set else "the recipe has no qat section",
        "export-onnx": None if quantizes else "nothing is quantized (no data.calib_file)",
        "build-engine": None if quantizes else "nothing is exported",
        "benchmark": None,
    }


def gpu_unavailable_reason() -> str | None:
    """Why GPU stages cannot run here (no TensorRT, no NVIDIA GPU), or None."""
    from qtoolkit.engine import cuda_device_names, installed_tensorrt_version

    missing = [] if installed_tensorrt_version() else ["TensorRT"]
    missing += [] if cuda_device_names() else ["an NVIDIA GPU"]
    return f"needs {' and '.join(missing)}, which this machine lacks" if missing else None


def _run_stage(rec: StageRecord, fn: StageFn, recipe: Recipe, outputs: list[Path]) -> None:
    start = time.perf_counter()
    try:
        rec.outcome = fn(recipe)
    finally:
        rec.seconds = round(time.perf_counter() - start, 3)
    rec.status = "ran"
    rec.notices = [str(n) for n in getattr(rec.outcome, "notices", None) or []]
    write_stamp(rec.name, rec.fingerprint, outputs, rec.seconds)


def run_pipeline(
    recipe: Recipe,
    *,
    force: bool = False,
    only: str | None = None,
    registry: Mapping[str, StageFn] | None = None,
    on_stage: Callable[[StageRecord], None] | None = None,
) -> RunOutcome:
    """Run the recipe's stages in STAGE_ORDER. `force` re-runs up-to-date stages; `only` runs
    one stage; `registry` replaces stage functions; `on_stage(record)` is called when a stage
    starts (status "running") and when it is settled. A failing stage stops the run: the
    manifest and report are written, then its error is raised."""
    started, start = now(), time.perf_counter()
    registry = {**DEFAULT_STAGES, **(registry or {})}
    selection = select_stages(recipe, only)
    check_stage_outputs(recipe, [n for n, why in selection.items() if why is None])
    notify = on_stage or (lambda rec: None)
    cache: dict[Path, str] = {}
    states: dict[str, str] = {}  # upstream state feeding downstream fingerprints
    records: list[StageRecord] = []
    error: BaseException | None = None
    for name in STAGE_ORDER:
        rec, deps = StageRecord(name), STAGE_DEPS[name]
        outputs = [recipe.stage_dir(d) for d in deps.outputs.split()]
        if error is not None:
            rec.status, rec.reason = "not-run", f"{records[-1].name} failed"
        elif selection[name] is not None:
            rec.status, rec.reason = "not-configured", selection[name]
        elif deps.needs_gpu and (gpu := gpu_unavailable_reason()):
            rec.status, rec.reason = "skipped", gpu
        else:
            inputs = {k: recipe_value(recipe, k, cache) for k in deps.reads.split()}
            upstream = {u: states[u] for u in deps.after.split() if u in states}
            rec.fingerprint = digest({"stage": name, "inputs": inputs, "after": upstream})
            rec.outputs = [str(p) for p in outputs]
            saved = stamped(outputs)
            if not force and saved is not None and saved["fingerprint"] == rec.fingerprint:
                rec.status = "up-to-date"
                rec.reason = f"unchanged since {saved.get('finished')} ({saved.get('seconds')}s)"
            else:
                rec.status = "running"
                notify(rec)
                try:
                    _run_stage(rec, registry[name], recipe, outputs)
                except Exception as exc:
                    first = (str(exc).splitlines() or [type(exc).__name__])[0]
                    rec.status, rec.reason, error = "failed", first, exc
        # Later stages see this one as its stamp says, whether or not it ran this time (so
        # `only` and skipped stages give the same fingerprints as a full run).
        saved = stamped(outputs) if rec.status != "failed" else None
        states[name] = digest([saved["fingerprint"], saved["outputs"]]) if saved else "missing"
        records.append(rec)
        notify(rec)
    seconds = round(time.perf_counter() - start, 3)
    outcome = RunOutcome(records, recipe.output_dir / MANIFEST, recipe.output_dir / REPORT, seconds)
    write_manifest(recipe, outcome, started, cache)
    write_report(recipe, outcome)
    if error is not None:
        raise error
    return outcome
