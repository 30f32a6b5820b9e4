"""A TensorRT engine as a runner (`EngineRunner` behind the common interface).

Batches are padded to their longest sentence; an engine's profile may start at a longer
sequence, so inputs are padded further to its smallest one (the extra positions are masked out
and trimmed again by the task's split_rows)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qtoolkit.runtime.runner import to_numpy

__all__ = ["TrtRunner"]


def _engine_precision(precision: Mapping[str, Any]) -> str:
    """int8 for a Q/DQ engine, else fp16 or fp32 from its builder flags / fp16 tensors; the
    build report says it (an engine without one is taken to be qtool's default, int8)."""
    if not precision or precision.get("onnx_quantize_nodes"):
        return "int8"
    flags = " ".join(precision.get("builder_flags", [])).upper()
    return "fp16" if "FP16" in flags or precision.get("onnx_fp16_tensors") else "fp32"


class TrtRunner:
    runtime = "tensorrt"
    device = "cuda"

    def __init__(self, engine_path: str | Path) -> None:
        from qtoolkit.engine import EngineRunner
        from qtoolkit.engine.report import build_report_path

        self.path = Path(engine_path)
        self.engine = EngineRunner(self.path)
        self.input_names = list(self.engine.input_names)
        self.output_names = tuple(self.engine.output_names)
        lo, _, hi = self.engine.profile_shapes(self.input_names[0])
        self.min_seq, self.max_batch = lo[1], hi[0]
        report = build_report_path(self.path)
        self.build = json.loads(report.read_text()) if report.is_file() else {}
        self.precision = _engine_precision(self.build.get("precision") or {})

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = {}
        for name in self.input_names:
            array = to_numpy(batch[name])
            if array.shape[1] < self.min_seq:
                array = np.pad(array, ((0, 0), (0, self.min_seq - array.shape[1])))
            feeds[name] = array
        return self.engine.run(feeds)

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        bound = {n: feeds[n] for n in self.input_names if n in feeds}
        self.engine.run(bound)  # raises QtoolError for a shape outside the profile
        return lambda: self.engine.benchmark(bound, warmup=0, iterations=1)

    def details(self) -> dict[str, Any]:
        return {"tensorrt": self.build.get("tensorrt_version"), "gpu": self.build.get("gpu")}
