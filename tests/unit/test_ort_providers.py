"""ONNX Runtime GPU providers: TensorRT EP caches and profiles, CUDA fallback, warm-up >= 1."""

from __future__ import annotations

from pathlib import Path

from qtoolkit.bench.backends import RunnerTimer
from qtoolkit.bench.ort_providers import cache_dir_for, min_warmup, ort_providers
from qtoolkit.recipe import EngineConfig

NAMES = ("input_ids", "attention_mask", "token_type_ids")
ENGINE = EngineConfig(min_shape=(1, 16), opt_shape=(8, 128), max_shape=(32, 256), workspace_mib=512)


def test_tensorrt_ep_has_caches_profiles_and_cuda_fallback(tmp_path):
    cache = cache_dir_for(tmp_path / "bench", Path("runs/x/export/model.onnx"))
    assert cache == tmp_path / "bench" / "ort-trt-cache" / "model"
    providers = ort_providers("TensorrtExecutionProvider", NAMES, ENGINE, cache, "int8")
    (name, options), *fallbacks = providers
    assert name == "TensorrtExecutionProvider"
    assert fallbacks == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "True"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(cache)
    assert options["trt_profile_min_shapes"] == (
        "input_ids:1x16,attention_mask:1x16,token_type_ids:1x16"
    )
    assert options["trt_profile_opt_shapes"].startswith("input_ids:8x128,")
    assert options["trt_profile_max_shapes"].endswith("token_type_ids:32x256")
    assert options["trt_max_workspace_size"] == str(512 << 20)
    assert options["trt_int8_enable"] == options["trt_fp16_enable"] == "True"
    assert all(isinstance(v, str) for v in options.values())
    (_, fp32_options), *_ = ort_providers("TensorrtExecutionProvider", NAMES, ENGINE, cache, "fp32")
    assert "trt_int8_enable" not in fp32_options and "trt_fp16_enable" not in fp32_options


def test_cuda_and_cpu_providers():
    cuda = ort_providers("CUDAExecutionProvider", NAMES, ENGINE, Path("c"), "int8")
    assert cuda == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers("CPUExecutionProvider", NAMES, ENGINE, Path("c"), "fp32") == [
        "CPUExecutionProvider"
    ]


def test_gpu_providers_never_warm_up_zero_times():
    assert min_warmup("TensorrtExecutionProvider") == min_warmup("CUDAExecutionProvider") == 1
    assert min_warmup("CPUExecutionProvider") == 0

    class Runner:  # the runner's prepare() gives the call the timer runs
        runs = 0

        def prepare(self, feeds):
            def run():
                Runner.runs += 1

            return run

    timer = RunnerTimer(Runner(), min_warmup("TensorrtExecutionProvider"))
    timer.bind({})
    timer.warmup(0)  # bench.warmup: 0 must not time the engine build
    assert Runner.runs == 1
    cpu = RunnerTimer(Runner(), min_warmup("CPUExecutionProvider"))
    cpu.bind({})
    cpu.warmup(0)
    assert Runner.runs == 1
