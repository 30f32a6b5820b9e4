"""ONNX Runtime execution providers for the GPU backends, configured so that timing is fair.

The TensorRT execution provider builds a TensorRT engine inside `session.run`. Left at its
defaults it (a) has no fallback, so a node it cannot take runs on the CPU, (b) keeps no engine
or timing cache, so every new session rebuilds, and (c) has no optimisation profile, so every
new input shape rebuilds the engine, inside the timed loop. Here:
- CUDAExecutionProvider follows it (then the CPU), so nodes it leaves run on the GPU;
- its engine and timing caches live under the run folder (`<run>/bench/ort-trt-cache`), one
  subfolder per model file, so a second benchmark reuses the engine;
- its profile is the recipe's `engine` section (min/opt/max batch x seq for every input), the
  shapes `qtool build-engine` uses, so the benchmark's shapes inside it never rebuild;
- `min_warmup` says at least one untimed run is needed (the engine build), whatever
  `bench.warmup` says.
Options follow ONNX Runtime's TensorRT EP reference (trt_* provider options).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qtoolkit.recipe import EngineConfig

__all__ = [
    "GPU_PROVIDERS",
    "cache_dir_for",
    "min_warmup",
    "ort_providers",
    "tensorrt_ep_options",
]

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (CUDA, TENSORRT)


def _shapes(names: Sequence[str], shape: tuple[int, int]) -> str:
    return ",".join(f"{name}:{shape[0]}x{shape[1]}" for name in names)


def tensorrt_ep_options(
    input_names: Sequence[str], engine: EngineConfig, cache_dir: Path, precision: str
) -> dict[str, str]:
    """TensorRT EP provider options (all strings, as ONNX Runtime parses them)."""
    options = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        "trt_max_workspace_size": str(engine.workspace_mib << 20),
        "trt_profile_min_shapes": _shapes(input_names, engine.min_shape),
        "trt_profile_opt_shapes": _shapes(input_names, engine.opt_shape),
        "trt_profile_max_shapes": _shapes(input_names, engine.max_shape),
    }
    if precision == "int8":
        # The Q/DQ nodes carry the scales (no calibration table); fp16 for the rest, as
        # `qtool build-engine` does on TensorRT 10. The fp32 backend stays a true fp32 baseline.
        options |= {"trt_int8_enable": "True", "trt_fp16_enable": "True"}
    return options


def ort_providers(
    provider: str,
    input_names: Sequence[str],
    engine: EngineConfig,
    cache_dir: Path,
    precision: str,
) -> list[Any]:
    """The providers list for `ort.InferenceSession`: `provider` first, then its fallbacks."""
    if provider == TENSORRT:
        options = tensorrt_ep_options(input_names, engine, cache_dir, precision)
        return [(TENSORRT, options), CUDA, CPU]
    if provider == CUDA:
        return [CUDA, CPU]
    return [provider] if provider == CPU else [provider, CPU]


def min_warmup(provider: str | None) -> int:
    """Untimed runs a provider needs before timing: its first run builds or allocates."""
    return 1 if provider in GPU_PROVIDERS else 0


def cache_dir_for(bench_dir: Path, model_path: Path) -> Path:
    """`<bench>/ort-trt-cache/<model stem>`: caches of different models never mix."""
    return bench_dir / "ort-trt-cache" / model_path.stem
