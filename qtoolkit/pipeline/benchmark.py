"""The benchmark stage: latency p50/p90/p99 and throughput over a batch x sequence grid, and task
accuracy, for every target (a model file on a backend), into `<run>/bench`.

Every backend gets the same inputs (tokenized sentences from the recipe's data, else random
token ids) and is timed interleaved with the others (`qtoolkit.bench.latency`). Accuracy goes
through `evaluate_runner` on data.test_file, like `qtool evaluate`. Targets this machine cannot
run (a TensorRT engine without a GPU, a missing execution provider, a stage output not written
yet) are skipped and listed with the reason.
"""

from __future__ import annotations

import datetime as _dt
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.artifacts import Kind, check_output_dir
from qtoolkit.bench.targets import BenchTarget
from qtoolkit.errors import QtoolError
from qtoolkit.recipe import Recipe

__all__ = ["BenchOutcome", "feeds_maker", "run_benchmark"]

RESULTS_FORMAT = 1


@dataclass
class BenchOutcome:
    output_dir: Path
    rows: list[dict[str, Any]]  # one per target x shape: timings, or "skipped" with the reason
    accuracy: dict[str, dict[str, Any]]  # name -> {metrics, agreement, seconds} or {error}
    skipped: list[dict[str, str]]  # targets not run at all: name, backend, reason
    baselines: dict[str, list[str]]  # runtime family -> float candidates (fastest per shape)
    primary_metric: str | None
    results_md: Path
    plot: Path | None
    seconds: float
    notices: list[str] = field(default_factory=list)

    def summary(self) -> Any:
        """What `qtool benchmark` prints: results.md as written, then where it and the plot are."""
        from rich.console import Group
        from rich.markdown import Markdown

        plot = f", plot {self.plot}" if self.plot else ""
        return Group(Markdown(self.results_md.read_text()), f"wrote {self.results_md}{plot}")


def _open_all(targets, recipe: Recipe, device: str, advance, steps: int):
    from qtoolkit.bench.backends import BackendUnavailable, open_backend
    from qtoolkit.bench.targets import unavailable_reason

    opened, skipped = [], []
    for target in targets:
        reason = unavailable_reason(target)
        if reason is None:
            try:
                opened.append(open_backend(target, recipe, device, recipe.bench.threads))
            except BackendUnavailable as exc:
                reason = str(exc)
        if reason is not None:
            skipped.append({"name": target.name, "backend": target.backend.name, "reason": reason})
            for _ in range(steps - 1):  # its accuracy step, which will not come
                advance(f"skipped {target.name}")
        advance(f"{'skipped' if reason else 'opened'} {target.name}")
    return opened, skipped


def feeds_maker(opened, recipe: Recipe) -> tuple[Callable, str]:
    """`(batch, seq) -> feeds` for the first opened target (anything with `tokenizer`,
    `config` and `task_name`), from the recipe's sentences, and where they came from."""
    from qtoolkit.bench.inputs import read_timing_texts, synthetic_feeds, text_feeds

    first = opened[0]
    limit = max(recipe.bench.seq_lengths)
    positions = getattr(first.config, "max_position_embeddings", None)
    if positions is not None and limit > positions:
        raise QtoolError(
            f"bench.seq_lengths goes up to {limit} but the model takes at most {positions} tokens"
        )
    if first.task_name == "multiple-choice":
        return _choice_feeds_maker(first, recipe)
    texts, source = read_timing_texts(recipe, max(recipe.bench.batch_sizes))
    if texts:
        return (lambda b, s: text_feeds(first.tokenizer, texts, b, s)), source
    return (lambda b, s: synthetic_feeds(first.config.vocab_size, b, s, recipe.seed)), source


def _choice_feeds_maker(first, recipe: Recipe) -> tuple[Callable, str]:
    """[batch, choices, seq] timing inputs from the recipe's multiple-choice questions."""
    from qtoolkit.bench.inputs import choice_feeds
    from qtoolkit.tasks.multiple_choice import read_choices

    path = recipe.data.calib_file or recipe.data.test_file
    if path is None:
        raise QtoolError("benchmarking multiple choice needs data.calib_file or data.test_file")
    questions = read_choices(path, max(recipe.bench.batch_sizes))
    feeds = lambda b, s: choice_feeds(first.tokenizer, questions, b, s)  # noqa: E731
    return feeds, f"questions from {path}"


def _accuracy(opened, recipe: Recipe, advance) -> tuple[dict[str, dict[str, Any]], dict]:
    from qtoolkit.pipeline.common import split_evaluator, stage_task
    from qtoolkit.tasks.compare import compare_predictions
    from qtoolkit.tasks.evaluation import evaluate_runner

    first, data_cfg = opened[0], recipe.data
    task = stage_task(recipe, first.task_name)
    evaluator = split_evaluator(
        recipe,
        task,
        first.tokenizer,
        data_cfg.test_file,
        first.config,
        limit=recipe.bench.accuracy_limit,
    )
    data = evaluator.data
    results: dict[str, dict[str, Any]] = {}
    predictions = {}
    for ob in opened:
        name = ob.target.name
        batch_size = min(data_cfg.eval_batch_size, ob.max_batch or data_cfg.eval_batch_size)
        start = time.perf_counter()
        try:
            metrics, predictions[name] = evaluate_runner(ob.runner, task, data, batch_size, name)
        except QtoolError as exc:  # e.g. data.max_length beyond an engine's profile
            results[name] = {"error": str(exc)}
        else:
            results[name] = {"metrics": metrics, "seconds": round(time.perf_counter() - start, 3)}
        advance(f"{task.primary_metric} {name}")
    floats = [o.target.name for o in opened if o.target.backend.precision == "fp32"]
    reference = next((n for n in floats + list(predictions) if n in predictions), None)
    metric = task.primary_metric
    for name, preds in predictions.items():
        ref = results[reference]["metrics"][metric]
        # Δ and agreement against the float reference, with paired bootstrap intervals.
        compared = compare_predictions(
            task, data, preds, predictions[reference], results[name]["metrics"][metric] - ref
        )
        if name == reference:
            compared.update(delta_points=None, delta=None, tie=None)
        results[name].update(compared)
        results[name]["agreement_with"] = reference
    info = {
        "primary_metric": task.primary_metric,
        "accuracy_data": str(data_cfg.test_file),
        "accuracy_examples": evaluator.num_examples,
    }
    return results, info


def _fused_targets(targets, folder: Path) -> tuple[list[tuple[BenchTarget, BenchTarget]], list]:
    """For every ort-fp32 target whose file exists, the same graph fused by ORT's transformer
    optimizer, as a second float candidate (`<name>-fused`)."""
    from qtoolkit.bench.fused import FUSED_SUFFIX, fused_copy

    extra, notes = [], []
    for t in targets:
        if t.backend.name != "ort-fp32" or t.path is None or not Path(t.path).is_file():
            continue
        name = f"{t.name}{FUSED_SUFFIX}"
        try:
            path = fused_copy(Path(t.path), folder / name)
        except QtoolError as exc:
            notes.append(f"{name} not timed: {exc}")
            continue
        extra.append((BenchTarget(name, t.backend, path, explicit=True), t))
    return extra, notes


def _measure(targets, recipe: Recipe, device: str, shapes, steps, total, do_accuracy, notices):
    """Open every target, time the grid interleaved, then score accuracy."""
    from qtoolkit.bench.latency import intra_op_threads, run_grid
    from qtoolkit.ui import progress_bar

    cfg = recipe.bench
    with progress_bar("benchmark", total) as advance:
        opened, skipped = _open_all(targets, recipe, device, advance, steps)
        notices += [f"{s['name']} skipped: {s['reason']}" for s in skipped]
        if not opened:
            raise QtoolError("nothing could be benchmarked: " + "; ".join(notices))
        tasks = {o.task_name for o in opened}
        if len(tasks) > 1:
            raise QtoolError(f"benchmark targets are models of different tasks: {sorted(tasks)}")
        make_feeds, source = feeds_maker(opened, recipe)
        timers = {o.target.name: o.timer for o in opened}
        with intra_op_threads(cfg.threads):
            grid = run_grid(timers, shapes, make_feeds, cfg.warmup, cfg.iterations, advance)
            accuracy, info = _accuracy(opened, recipe, advance) if do_accuracy else ({}, {})
    return opened, skipped, grid, accuracy, info, source


def _machine(device: str) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": _openvino_version(),
    }


def _openvino_version() -> str | None:
    from qtoolkit.runtime.ov_runner import openvino_missing

    if openvino_missing():
        return None
    import openvino

    return openvino.__version__.split("-")[0]


def _precision_notices(described: list[dict[str, Any]]) -> list[str]:
    """Where a runtime ran in another precision than its backend's name says (ov-bf16 on a CPU
    without native bf16 is OpenVINO's default precision, f32)."""
    notices = []
    for d in described:
        used = d["runs_as"].get("inference_precision")
        if d["runtime"] == "openvino" and d["precision"] == "bf16" and used != "bf16":
            why = "" if d["runs_as"].get("native_bf16") else " (this CPU has no native bf16)"
            notices.append(f"{d['name']}: OpenVINO's default precision here is {used}{why}")
    return notices


def run_benchmark(
    recipe: Recipe, targets: Sequence[BenchTarget | str] | None = None
) -> BenchOutcome:
    """Benchmark `targets` (default: `resolve_targets(recipe)`, i.e. bench.backends on the
    recipe's stage outputs plus bench.targets); strings are `NAME=PATH` (see parse_target)."""
    from qtoolkit.bench.latency import rounds_for
    from qtoolkit.bench.machine import machine_info
    from qtoolkit.bench.plot import plot_accuracy_latency
    from qtoolkit.bench.report import RESULTS_MD, add_speedups, family_baselines, write_results
    from qtoolkit.bench.targets import parse_target, resolve_targets
    from qtoolkit.pipeline.common import resolve_device

    start = time.perf_counter()
    cfg = recipe.bench
    if targets is None:
        targets = resolve_targets(recipe)
    targets = [t if isinstance(t, BenchTarget) else parse_target(t) for t in targets]
    names = [t.name for t in targets]
    if not targets:
        raise QtoolError("nothing to benchmark: bench.backends is empty and no target was given")
    if len(set(names)) != len(names):
        raise QtoolError(f"benchmark target names must be unique: {names}")
    out_dir = recipe.stage_dir("bench")
    # Before any timing: the report folder must be replaceable and hold none of the targets.
    inputs = [t.path for t in targets] + [recipe.data.test_file, recipe.data.calib_file]
    check_output_dir(out_dir, Kind.BENCH, inputs)
    device = resolve_device(cfg.device)
    shapes = [(b, s) for s in cfg.seq_lengths for b in cfg.batch_sizes]
    do_accuracy = cfg.accuracy and recipe.data.test_file is not None
    steps = 2 if do_accuracy else 1
    total = len(targets) * steps + len(shapes) * rounds_for(cfg.iterations)
    notices: list[str] = []
    with tempfile.TemporaryDirectory(prefix="qtool-fused-") as fused_dir:
        fused, fuse_notes = _fused_targets(targets, Path(fused_dir)) if cfg.fused_fp32 else ([], [])
        notices += fuse_notes
        fused_from = {f.name: str(t.path) for f, t in fused}
        targets = [*targets, *(f for f, _ in fused)]
        total += len(fused) * steps
        opened, skipped, grid, accuracy, info, source = _measure(
            targets, recipe, device, shapes, steps, total, do_accuracy, notices
        )
    if not do_accuracy:
        notices.append("accuracy not measured: " + ("no data.test_file" if cfg.accuracy else "off"))
    rows = [r.to_dict() for r in grid]
    for r in rows:
        if "skipped" in r:
            notices.append(f"{r['backend']} not run at {r['batch']}x{r['seq']}: {r['skipped']}")
    for name, acc in accuracy.items():
        if "error" in acc:
            notices.append(f"{name}: accuracy not measured: {acc['error']}")
    described = [
        {
            "name": o.target.name,
            "backend": o.target.backend.name,
            "runtime": o.target.backend.runtime,
            "precision": o.target.backend.precision,
            "family": o.family,
            "device": o.device,
            "path": str(o.target.path),
            "runs_as": o.describe(),
            **(
                {"path": f"{fused_from[o.target.name]} fused at run time", "fused": True}
                if o.target.name in fused_from
                else {}
            ),
        }
        for o in opened
    ]
    notices += _precision_notices(described)
    baselines = family_baselines(described)
    add_speedups(rows, {d["name"]: d["family"] for d in described}, baselines)
    metric = info.get("primary_metric")
    results = {
        "format": RESULTS_FORMAT,
        "recipe": recipe.name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(cfg.threads), **_machine(device)},
        "settings": cfg.model_dump(mode="json", exclude={"output_dir", "targets"}),
        "inputs": source,
        "targets": described,
        "baselines": baselines,
        "rows": rows,
        "accuracy": accuracy,
        **info,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - start, 3),
    }

    def plot(path: Path) -> bool:
        if not accuracy:
            return False
        try:
            plot_accuracy_latency(rows, accuracy, metric, path)
        except QtoolError as exc:
            notices.append(f"no plot: {exc}")
            return False
        return True

    write_results(out_dir, results, plot)
    return BenchOutcome(
        output_dir=out_dir,
        rows=rows,
        accuracy=accuracy,
        skipped=skipped,
        baselines=baselines,
        primary_metric=metric,
        results_md=out_dir / RESULTS_MD,
        plot=out_dir / results["plot"] if results["plot"] else None,
        seconds=results["seconds"],
        notices=notices,
    )
