"""Open a target on its backend: a timer for the latency grid and a runner for accuracy.

Models are loaded through `qtoolkit.runtime.targets.open_target`, so the benchmark measures
exactly what `qtool evaluate` evaluates, and every runtime is a `Runner`. Every timer has the
same three steps: `bind` the inputs of one shape (the runner's `prepare`: converted and moved to
the device once), `warmup(n)` untimed runs, `measure(n)` -> n latencies in ms. PyTorch, ONNX
Runtime and OpenVINO are timed with `perf_counter` around a synchronous call (with a CUDA
synchronize for PyTorch on GPU); TensorRT engines with CUDA events by `EngineRunner.benchmark`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qtoolkit.bench.targets import BenchTarget
from qtoolkit.errors import QtoolError
from qtoolkit.runtime.runner import Runner, RuntimeUnavailable, describe

__all__ = ["BackendUnavailable", "OpenedBackend", "Timer", "open_backend"]


# A runtime that cannot start here is skipped by the benchmark, with this exception's message.
BackendUnavailable = RuntimeUnavailable


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
    runner: Runner  # what evaluate_runner scores
    tokenizer: Any
    config: Any
    task_name: str
    max_batch: int | None = None  # engines: the largest batch of the optimisation profile

    def describe(self) -> dict[str, Any]:
        """runtime, device and the precision the runtime reports it used."""
        return describe(self.runner)


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


class RunnerTimer(_CallTimer):
    """Times `runner.prepare(feeds)`'s call: inputs bound once, outside the timed loop."""

    def __init__(self, runner: Runner, min_warmup: int = 0) -> None:
        self.runner = runner
        # GPU providers build (TensorRT EP) or allocate in their first run: never time it.
        self.min_warmup = min_warmup

    def warmup(self, iterations: int) -> None:
        super().warmup(max(iterations, self.min_warmup))

    def bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        self._call = self.runner.prepare(feeds)


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


def _opened(target: BenchTarget, opened, timer: Timer, device: str, family=None):
    return OpenedBackend(
        target=target,
        family=family or target.backend.family,
        device=device,
        timer=timer,
        runner=opened.runner,
        tokenizer=opened.tokenizer,
        config=opened.config,
        task_name=opened.task_name,
        max_batch=getattr(opened.runner, "max_batch", None),
    )


def _check_kind(target: BenchTarget, opened) -> None:
    expected = "torch-fakequant" if target.backend.artifact == "quantized-checkpoint" else None
    expected = expected or ("torch-fp32" if target.backend.runtime == "torch" else None)
    if expected and opened.kind != expected:
        raise QtoolError(f"{target.name}: {target.path} is a {opened.kind} model, not {expected}")


def open_backend(
    target: BenchTarget, recipe, torch_device: str, threads: int | None
) -> OpenedBackend:
    """Load `target` for its backend; BackendUnavailable if this machine cannot run it."""
    from qtoolkit.bench.ort_providers import cache_dir_for, min_warmup, ort_providers
    from qtoolkit.runtime.targets import RuntimeOptions, open_target

    spec = target.backend
    if spec.runtime == "tensorrt":
        opened = open_target(target.path, recipe, runtime="tensorrt")
        return _opened(target, opened, EngineTimer(opened.runner.engine), "cuda")
    if spec.runtime == "torch":
        device = "cuda" if spec.precision == "fp16" else torch_device
        opened = open_target(target.path, recipe, device, runtime="torch")
        _check_kind(target, opened)
        if spec.precision == "fp16":
            opened.runner.model.half()
        return _opened(target, opened, RunnerTimer(opened.runner), device, f"torch-{device}")
    if target.path.suffix not in (".onnx", ".xml"):
        raise QtoolError(f"{target.name}: {spec.name} needs a .onnx file, not {target.path}")
    options = RuntimeOptions(
        threads=threads,
        precision=spec.precision if spec.runtime == "onnxruntime" else None,
        inference_precision=spec.inference_precision,
        hint=recipe.bench.performance_hint,
    )
    if spec.provider not in (None, "CPUExecutionProvider"):
        cache_dir = cache_dir_for(recipe.stage_dir("bench"), target.path)
        if spec.provider == "TensorrtExecutionProvider":
            cache_dir.mkdir(parents=True, exist_ok=True)
        import onnx

        graph = onnx.load(str(target.path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        names = [i.name for i in graph.input if i.name not in initializers]
        providers = ort_providers(spec.provider, names, recipe.engine, cache_dir, spec.precision)
        options = RuntimeOptions(threads=threads, providers=providers, precision=spec.precision)
    opened = open_target(target.path, recipe, runtime=spec.runtime, options=options)
    runner = opened.runner
    if spec.provider is not None and runner.provider != spec.provider:
        raise BackendUnavailable(f"onnxruntime could not start {spec.provider}")
    timer = RunnerTimer(runner, min_warmup(spec.provider))
    return _opened(target, opened, timer, runner.device)
