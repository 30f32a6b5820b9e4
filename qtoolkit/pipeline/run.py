"""`qtool run`: every stage a recipe configures, in order, skipping those already up to date.

Stages are called through a registry (name -> `fn(recipe) -> outcome`, or "module:function"
imported when needed), so a stage whose module is not written yet is reported as not available
instead of breaking the run. After a stage runs, a stamp (`qtool-run.json`) goes into its output
folder: a fingerprint of the recipe fields and data files it reads and of the stages before it,
and the size and mtime of every file it wrote. The next run skips the stage when both still
match. The run writes `<output_dir>/run.json` (manifest) and `<output_dir>/report.md`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
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

StageFn = Callable[[Recipe], Any]
STAMP = "qtool-run.json"
MANIFEST = "run.json"
REPORT = "report.md"
SWEEP_METHODS = ("max", "percentile", "mse", "entropy")
STAGE_ORDER = tuple("finetune calibrate ptq-sweep qat export-onnx build-engine benchmark".split())
_RUN_ONLY = {"output_dir", "resume", "save_every_steps"}  # change no result


def ptq_sweep_stage(recipe: Recipe) -> Any:
    from qtoolkit.pipeline.sweep import run_ptq_sweep

    return run_ptq_sweep(recipe, list(SWEEP_METHODS))


def build_engine_stage(recipe: Recipe) -> Any:
    from qtoolkit.bench.targets import ENGINE_FILE, EXPORT_FILE
    from qtoolkit.engine import build_engine

    onnx_path = recipe.stage_dir("export") / EXPORT_FILE
    if not onnx_path.is_file():
        raise QtoolError(f"no ONNX model to build an engine from: {onnx_path}")
    return build_engine(onnx_path, recipe.stage_dir("engine") / ENGINE_FILE, recipe.engine)


DEFAULT_STAGES: dict[str, str | StageFn] = {
    "finetune": "qtoolkit.pipeline.finetune:run_finetune",
    "calibrate": "qtoolkit.pipeline.calibrate:run_calibrate",
    "ptq-sweep": ptq_sweep_stage,
    "qat": "qtoolkit.pipeline.qat:run_qat",
    "export-onnx": "qtoolkit.pipeline.export:run_export",
    "build-engine": build_engine_stage,
    "benchmark": "qtoolkit.pipeline.benchmark:run_benchmark",
}


@dataclass(frozen=True)
class _Deps:
    """What a stage reads (recipe sections or section.field; *_file fields are hashed), the
    stage folders it writes (the stamp goes into the first) and the stages it builds on."""

    reads: str
    outputs: str
    after: str = ""
    needs_gpu: bool = False


_TEXT = "data.max_length data.pad_to_max_length data.text_field data.text_pair_field "
_TEXT += "data.label_field data.doc_stride"
_DEPS = {
    "finetune": _Deps(f"seed model finetune data.train_file data.eval_file {_TEXT}", "finetuned"),
    "calibrate": _Deps(f"seed model quant calib data.calib_file {_TEXT}", "calibrated", "finetune"),
    "ptq-sweep": _Deps(
        f"seed model quant calib data.calib_file data.test_file {_TEXT}",
        "calibrated ptq_sweep",
        "finetune",
    ),
    "qat": _Deps(
        f"seed model quant calib qat data.train_file data.eval_file {_TEXT}",
        "qat",
        "finetune calibrate ptq-sweep",
    ),
    "export-onnx": _Deps(
        f"model export data.calib_file {_TEXT}", "export", "calibrate ptq-sweep qat"
    ),
    "build-engine": _Deps("engine", "engine", "export-onnx", needs_gpu=True),
    "benchmark": _Deps(
        f"seed model bench data.calib_file data.test_file data.eval_batch_size {_TEXT}",
        "bench",
        " ".join(STAGE_ORDER[:-1]),
    ),
}


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # running, ran, up-to-date, skipped, not-available,
    # not-configured, failed, not-run
    reason: str | None = None
    seconds: float = 0.0
    fingerprint: str | None = None
    outputs: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    outcome: Any = None  # what the stage function returned (not in the manifest)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outcome"}


@dataclass
class RunOutcome:
    stages: list[StageRecord]
    manifest_path: Path
    report_path: Path
    seconds: float


def select_stages(recipe: Recipe, only: str | None = None) -> dict[str, str | None]:
    """stage -> None if it runs, else why not. `recipe.stages` (when the Recipe has that field
    and it is set) lists them; otherwise every stage the recipe configures runs."""
    listed = [only] if only else getattr(recipe, "stages", None)
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


def _resolve(entry: str | StageFn) -> tuple[StageFn | None, str | None]:
    if callable(entry):
        return entry, None
    module_name, _, attr = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the stage's own module missing means "not written yet"; anything else is a bug.
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        return None, f"{module_name} is not in this qtoolkit yet"
    fn = getattr(module, attr, None)
    return (fn, None) if fn is not None else (None, f"{module_name} has no {attr} yet")


def _sha256(path: Path, cache: dict[Path, str]) -> str:
    if path not in cache:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        cache[path] = digest.hexdigest()
    return cache[path]


def _snapshot(paths: list[Path]) -> dict[str, list[int]]:
    """path -> [size, mtime_ns] of every file under `paths` (stamps excluded)."""
    files = {}
    for root in paths:
        if not root.exists():
            continue
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in found:
            if p.name != STAMP:
                st = p.stat()
                files[str(p)] = [st.st_size, st.st_mtime_ns]
    return files


def _recipe_value(recipe: Recipe, key: str, cache: dict[Path, str]) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = getattr(node, part)
    if hasattr(node, "model_dump"):
        value = node.model_dump(mode="json", exclude=_RUN_ONLY)
        if key == "model" and node.path:
            from qtoolkit.models import resolve_model_ref

            # A changed checkpoint (same path, new weights) must re-run what reads it.
            with contextlib.suppress(QtoolError):
                value["files"] = _snapshot([resolve_model_ref(node.path)])
        return value
    if key.endswith("_file") and node is not None and Path(node).is_file():
        return {"path": str(node), "sha256": _sha256(Path(node), cache)}
    return str(node) if isinstance(node, Path) else node


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamped(outputs: list[Path]) -> dict[str, Any] | None:
    """The stage's stamp if the files it lists are still exactly there, else None."""
    stamp = outputs[0] / STAMP
    if not stamp.is_file():
        return None
    saved = json.loads(stamp.read_text())
    return saved if saved.get("outputs") == _snapshot(outputs) else None


def _run_stage(rec: StageRecord, fn: StageFn, recipe: Recipe, outputs: list[Path]) -> None:
    from qtoolkit.fsutil import write_json

    start = time.perf_counter()
    try:
        rec.outcome = fn(recipe)
    finally:
        rec.seconds = round(time.perf_counter() - start, 3)
    rec.status = "ran"
    rec.notices = [str(n) for n in getattr(rec.outcome, "notices", None) or []]
    outputs[0].mkdir(parents=True, exist_ok=True)
    stamp = {
        "stage": rec.name,
        "fingerprint": rec.fingerprint,
        "outputs": _snapshot(outputs),
        "finished": _now(),
        "seconds": rec.seconds,
    }
    write_json(outputs[0] / STAMP, stamp)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def run_pipeline(
    recipe: Recipe,
    *,
    force: bool = False,
    only: str | None = None,
    registry: Mapping[str, str | StageFn] | None = None,
    on_stage: Callable[[StageRecord], None] | None = None,
) -> RunOutcome:
    """Run the recipe's stages in STAGE_ORDER. `force` re-runs up-to-date stages; `only` runs
    one stage; `registry` replaces stage functions; `on_stage(record)` is called when a stage
    starts (status "running") and when it is settled. A failing stage stops the run: the
    manifest and report are written, then its error is raised."""
    started, start = _now(), time.perf_counter()
    registry = {**DEFAULT_STAGES, **(registry or {})}
    selection = select_stages(recipe, only)
    notify = on_stage or (lambda rec: None)
    cache: dict[Path, str] = {}
    states: dict[str, str] = {}  # upstream state feeding downstream fingerprints
    records: list[StageRecord] = []
    error: BaseException | None = None
    for name in STAGE_ORDER:
        rec, deps = StageRecord(name), _DEPS[name]
        outputs = [recipe.stage_dir(d) for d in deps.outputs.split()]
        fn, missing = _resolve(registry[name]) if selection[name] is None else (None, None)
        if error is not None:
            rec.status, rec.reason = "not-run", f"{records[-1].name} failed"
        elif selection[name] is not None:
            rec.status, rec.reason = "not-configured", selection[name]
        elif fn is None:
            rec.status, rec.reason = "not-available", missing
        elif deps.needs_gpu and (gpu := gpu_unavailable_reason()):
            rec.status, rec.reason = "skipped", gpu
        else:
            inputs = {k: _recipe_value(recipe, k, cache) for k in deps.reads.split()}
            upstream = {u: states[u] for u in deps.after.split() if u in states}
            rec.fingerprint = _digest({"stage": name, "inputs": inputs, "after": upstream})
            rec.outputs = [str(p) for p in outputs]
            saved = _stamped(outputs)
            if not force and saved is not None and saved["fingerprint"] == rec.fingerprint:
                rec.status = "up-to-date"
                rec.reason = f"unchanged since {saved.get('finished')} ({saved.get('seconds')}s)"
            else:
                rec.status = "running"
                notify(rec)
                try:
                    _run_stage(rec, fn, recipe, outputs)
                except Exception as exc:
                    first = (str(exc).splitlines() or [type(exc).__name__])[0]
                    rec.status, rec.reason, error = "failed", first, exc
        # Later stages see this one as its stamp says, whether or not it ran this time (so
        # `only` and skipped stages give the same fingerprints as a full run).
        saved = _stamped(outputs) if rec.status != "failed" else None
        states[name] = _digest([saved["fingerprint"], saved["outputs"]]) if saved else "missing"
        records.append(rec)
        notify(rec)
    seconds = round(time.perf_counter() - start, 3)
    outcome = RunOutcome(records, recipe.output_dir / MANIFEST, recipe.output_dir / REPORT, seconds)
    _write_manifest(recipe, outcome, started, cache)
    _write_report(recipe, outcome)
    if error is not None:
        raise error
    return outcome


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    from qtoolkit import __version__
    from qtoolkit.engine import installed_tensorrt_version

    found: dict[str, str | None] = {"qtoolkit": __version__}
    for dist in ("torch", "transformers", "onnx", "onnxruntime", "pytorch-quantization"):
        for name in (dist, "onnxruntime-gpu") if dist == "onnxruntime" else (dist,):
            with contextlib.suppress(md.PackageNotFoundError):
                found[dist] = found.get(dist) or md.version(name)
        found.setdefault(dist, None)
    return {**found, "tensorrt": installed_tensorrt_version()}


def _write_manifest(recipe: Recipe, outcome: RunOutcome, started: str, cache) -> None:
    import platform

    from qtoolkit.fsutil import write_json

    files = ("train_file", "eval_file", "calib_file", "test_file")
    inputs = {
        f"data.{k}": _recipe_value(recipe, f"data.{k}", cache)
        for k in files
        if getattr(recipe.data, k) is not None
    }
    write_json(
        outcome.manifest_path,
        {
            "format": 1,
            "recipe": recipe.name,
            "recipe_sha256": _digest(recipe.model_dump(mode="json")),
            "started": started,
            "finished": _now(),
            "seconds": outcome.seconds,
            "versions": _versions(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "inputs": inputs,
            "stages": [r.to_dict() for r in outcome.stages],
            "report": REPORT,
            "recipe_dump": recipe.model_dump(mode="json"),
        },
    )


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _section(title: str, md_file: Path, root: Path) -> list[str]:
    """A report section embedding a stage's Markdown table (without its own heading)."""
    if not md_file.is_file():
        return []
    folder, link = _rel(md_file.parent, root), _rel(md_file, root)
    body = [ln for ln in md_file.read_text().splitlines() if not ln.startswith("# ")]
    body = [ln.replace("](", f"]({folder}/") if ln.startswith("![") else ln for ln in body]
    return ["", f"## {title}", "", f"From [{link}]({link}).", "", *body]


def _links(title: str, files: list[Path], root: Path, text: list[str]) -> list[str]:
    found = [p for p in files if p.is_file()]
    if not found and not text:
        return []
    return ["", f"## {title}", "", *text, *(f"- [{_rel(p, root)}]({_rel(p, root)})" for p in found)]


def _write_report(recipe: Recipe, outcome: RunOutcome) -> None:
    from qtoolkit.bench.targets import ENGINE_FILE, EXPORT_FILE
    from qtoolkit.fsutil import atomic_file

    root = recipe.output_dir
    lines = [
        f"# Run report: {recipe.name}",
        "",
        f"Finished {_now()} in {outcome.seconds:.1f}s; manifest [{MANIFEST}]({MANIFEST}).",
        "",
        "| stage | status | seconds | note |",
        "|---|---|---:|---|",
    ]
    for r in outcome.stages:
        note = (r.reason or "; ".join(r.notices[:2]) or "").replace("|", "/")
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {note} |")
    lines += _section("PTQ sweep", root / "ptq_sweep" / "results.md", root)
    export_dir = recipe.stage_dir("export")
    export_outcome = next(r.outcome for r in outcome.stages if r.name == "export-onnx")
    validation = getattr(export_outcome, "validation", None)
    summary = [f"Validation against PyTorch: {validation.summary()}.", ""] if validation else []
    files = [export_dir / EXPORT_FILE, *sorted(export_dir.glob("*.json"))]
    lines += _links("Export", [f for f in files if f.name != STAMP], root, summary)
    engine = recipe.stage_dir("engine") / ENGINE_FILE
    lines += _links("TensorRT engine", [engine, engine.with_suffix(".build.json")], root, [])
    lines += _section("Benchmark", recipe.stage_dir("bench") / "results.md", root)
    not_run = [r for r in outcome.stages if r.status in ("skipped", "not-available", "failed")]
    if not_run:
        lines += ["", "## Not run", ""]
        lines += [f"- {r.name} ({r.status}): {r.reason}" for r in not_run]
    with atomic_file(outcome.report_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
