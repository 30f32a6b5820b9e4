"""Open a target on its backend: a timer for the latency grid and a runner for accuracy.

Models are loaded through `qtoolkit.runtime.targets.open_target`, so the benchmark measures
exactly what `qtool evaluate` evaluates. Every timer has the same three steps: `bind` the inputs
of one shape (moved to the device once), `warmup(n)` untimed runs, `measure(n)` -> n latencies
in ms. CPU/PyTorch timers use `perf_counter` around a synchronous call (with a CUDA synchronize
for PyTorch on GPU); TensorRT engines are timed with CUDA events by `EngineRunner.benchmark`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qtoolkit.artifacts import EXPORT_FILE
from qtoolkit.bench.targets import BenchTarget
from qtoolkit.errors import QtoolError

__all__ = ["BackendUnavailable", "OpenedBackend", "Timer", "open_backend"]


class BackendUnavailable(QtoolError):
    """The backend cannot run on this machine (missing GPU, provider or runtime)."""


class Timer(Protocol):
    def bind(self, feeds: Mapping[str, np.ndarray]) -> None: ...
    def warmup(self, iterations: int) -> None: ...
    def measure(self, iterations: int) -> list[float]: ...


@dataclass
class OpenedBackend:
    target: BenchTarget
    family: str  # speed-ups are relative to the float member of the same family
    device: str
    timer: Timer
    runner: Callable[[Mapping[str, Any]], dict[str, np.ndarray]]  # evaluate_runner's runner
    tokenizer: Any
    config: Any
    task_name: str
    max_batch: int | None = None  # engines: the largest batch of the optimisation profile


class _CallTimer:
    """Times a synchronous call; subclasses set `self._call` in `bind`."""

    _call: Callable[[], Any]

    def warmup(self, iterations: int) -> None:
        for _ in range(iterations):
            self._call()

    def measure(self, iterations: int) -> list[float]:
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            self._call()
            times.append((time.perf_counter() - start) * 1000.0)
        return times


class TorchTimer(_CallTimer):
    def __init__(self, model, device: str) -> None:
        self.model, self.device = model, device

    def bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        import torch

        inputs = {k: torch.from_numpy(np.asarray(v)).to(self.device) for k, v in feeds.items()}
        sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)

        def call() -> None:
            with torch.inference_mode():
                self.model(**inputs)
            sync()

        self._call = call


class OrtTimer(_CallTimer):
    def __init__(self, session, min_warmup: int = 0) -> None:
        self.session = session
        # GPU providers build (TensorRT EP) or allocate in their first run: never time it.
        self.min_warmup = min_warmup

    def warmup(self, iterations: int) -> None:
        super().warmup(max(iterations, self.min_warmup))

    def bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        feed = {}
        for inp in self.session.get_inputs():
            if inp.name not in feeds:
                raise QtoolError(f"the ONNX model needs input '{inp.name}', which is not given")
            dtype = np.int32 if inp.type == "tensor(int32)" else np.int64
            feed[inp.name] = np.ascontiguousarray(feeds[inp.name], dtype=dtype)
        self._call = lambda: self.session.run(None, feed)


class EngineTimer:
    def __init__(self, engine) -> None:
        self.engine = engine

    def bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        self.feeds = {n: feeds[n] for n in self.engine.input_names if n in feeds}
        self.engine.run(self.feeds)  # raises QtoolError for a shape outside the profile

    def warmup(self, iterations: int) -> None:
        if iterations:
            self.engine.benchmark(self.feeds, warmup=iterations, iterations=1)

    def measure(self, iterations: int) -> list[float]:
        return self.engine.benchmark(self.feeds, warmup=0, iterations=iterations).latencies_ms


def _engine_eval_runner(engine, min_seq: int):
    """Accuracy batches are padded to their longest sentence; pad further to the engine's
    smallest sequence (the extra positions are masked out and trimmed by split_rows)."""

    def run(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = {}
        for name in engine.input_names:
            value = batch[name]
            array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            if array.shape[1] < min_seq:
                array = np.pad(array, ((0, 0), (0, min_seq - array.shape[1])))
            feeds[name] = array
        return engine.run(feeds)

    return run


def _open_engine(target: BenchTarget, recipe) -> OpenedBackend:
    from qtoolkit.engine import EngineRunner
    from qtoolkit.engine.report import build_report_path
    from qtoolkit.runtime.targets import open_target

    # The engine holds no tokenizer or label names: take them from the ONNX it was built from.
    report = build_report_path(target.path)
    onnx_path = Path(json.loads(report.read_text())["onnx"]) if report.is_file() else None
    if onnx_path is None or not onnx_path.is_file():
        onnx_path = recipe.stage_dir("export") / EXPORT_FILE
    if not onnx_path.is_file():
        raise QtoolError(
            f"{target.path}: cannot find the ONNX model it was built from ({onnx_path}), "
            "which holds the tokenizer and config"
        )
    companion = open_target(onnx_path, recipe)
    engine = EngineRunner(target.path)
    lo, _, hi = engine.profile_shapes(engine.input_names[0])
    return OpenedBackend(
        target=target,
        family=target.backend.family,
        device="cuda",
        timer=EngineTimer(engine),
        runner=_engine_eval_runner(engine, lo[1]),
        tokenizer=companion.tokenizer,
        config=companion.config,
        task_name=companion.task_name,
        max_batch=hi[0],
    )


def open_backend(
    target: BenchTarget, recipe, torch_device: str, threads: int | None
) -> OpenedBackend:
    """Load `target` for its backend; BackendUnavailable if this machine cannot run it."""
    from qtoolkit.bench.ort_providers import cache_dir_for, min_warmup, ort_providers
    from qtoolkit.runtime import OrtRunner
    from qtoolkit.runtime.targets import open_target

    spec = target.backend
    if spec.runtime == "tensorrt":
        return _open_engine(target, recipe)
    if spec.runtime == "torch":
        device = "cuda" if spec.precision == "fp16" else torch_device
        opened = open_target(target.path, recipe, device)
        expected = "torch-fakequant" if spec.artifact == "quantized-checkpoint" else "torch-fp32"
        if opened.kind != expected:
            raise QtoolError(
                f"{target.name}: {target.path} is a {opened.kind} model, not {expected}"
            )
        model = opened.runner.model
        if spec.precision == "fp16":
            model.half()
        timer, family = TorchTimer(model, device), f"torch-{device}"
        return OpenedBackend(
            target=target,
            family=family,
            device=device,
            timer=timer,
            runner=opened.runner,
            tokenizer=opened.tokenizer,
            config=opened.config,
            task_name=opened.task_name,
        )
    if target.path.suffix != ".onnx":
        raise QtoolError(f"{target.name}: {spec.name} needs a .onnx file, not {target.path}")
    opened = open_target(target.path, recipe, threads=threads)
    runner = opened.runner
    if spec.provider != "CPUExecutionProvider":  # open_target's session is a CPU one
        cache_dir = cache_dir_for(recipe.stage_dir("bench"), target.path)
        if spec.provider == "TensorrtExecutionProvider":
            cache_dir.mkdir(parents=True, exist_ok=True)
        providers = ort_providers(
            spec.provider, opened.runner.input_names, recipe.engine, cache_dir, spec.precision
        )
        runner = OrtRunner(target.path, threads, providers)
        if runner.session.get_providers()[0] != spec.provider:
            raise BackendUnavailable(f"onnxruntime could not start {spec.provider}")
    device = "cpu" if spec.provider == "CPUExecutionProvider" else "cuda"
    return OpenedBackend(
        target=target,
        family=spec.family,
        device=device,
        timer=OrtTimer(runner.session, min_warmup(spec.provider)),
        runner=runner,
        tokenizer=opened.tokenizer,
        config=opened.config,
        task_name=opened.task_name,
    )
