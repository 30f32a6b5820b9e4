"""Which TensorRT typing mode and builder flags a build uses, decided from the version alone.

TensorRT 10 builds weakly typed networks by default: builder flags (FP16, INT8) widen the kernels
TensorRT may pick, and a network with Q/DQ nodes is quantized explicitly (the INT8 flag is set
for it, as the Q/DQ layers carry INT8 tensors). TensorRT 10 can also build strongly typed networks
(`NetworkDefinitionCreationFlag.STRONGLY_TYPED`, trtexec `--stronglyTyped`), where every tensor's
type comes from the ONNX and no precision flag may be set.

TensorRT 11 removed weak typing: `BuilderFlag.FP16/INT8/...` and trtexec `--fp16/--int8/--best`
are gone and every network is strongly typed (the creation flag is accepted but ignored, and
`--stronglyTyped` is no longer needed). Precision then comes only from the ONNX: fp16 casts for
the float parts (`export.fp16`) and Q/DQ for INT8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

__all__ = ["PrecisionPlan", "parse_trt_version", "plan_precision", "MIN_TRT_MAJOR"]

MIN_TRT_MAJOR = 10
_VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclass(frozen=True)
class PrecisionPlan:
    """Everything precision-related about one build, for the Python API and for trtexec."""

    trt_version: str
    trt_major: int
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag member names
    builder_flags: tuple[str, ...]  # BuilderFlag member names
    trtexec_flags: tuple[str, ...]
    note: str


def parse_trt_version(version: str) -> tuple[int, int, int]:
    """'10.13.3.9' -> (10, 13, 3); missing parts are 0."""
    match = _VERSION.match(str(version))
    if match is None:
        raise QtoolError(f"cannot read the TensorRT version {version!r}")
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


def plan_precision(trt_version: str, config: EngineConfig, has_qdq: bool) -> PrecisionPlan:
    """Decide typing mode and flags for `trt_version` (pure: no TensorRT import)."""
    major = parse_trt_version(trt_version)[0]
    if major < MIN_TRT_MAJOR:
        raise QtoolError(
            f"TensorRT {trt_version} is too old: qtoolkit builds with TensorRT {MIN_TRT_MAJOR} or "
            "newer (use the Docker image)"
        )
    if major >= 11:
        if config.strongly_typed is False:
            raise QtoolError(
                f"TensorRT {trt_version} has no weakly typed networks (engine.strongly_typed: "
                "false); leave it unset and put fp16 in the ONNX (export.fp16: true)"
            )
        return PrecisionPlan(
            trt_version=trt_version,
            trt_major=major,
            strongly_typed=True,
            network_flags=(),  # strongly typed by default; the creation flag is ignored
            builder_flags=(),
            trtexec_flags=(),
            note="strongly typed (TensorRT 11): precision from the ONNX (fp16 casts, Q/DQ)",
        )
    if config.strongly_typed:
        return PrecisionPlan(
            trt_version=trt_version,
            trt_major=major,
            strongly_typed=True,
            network_flags=("STRONGLY_TYPED",),
            builder_flags=(),
            trtexec_flags=("--stronglyTyped",),
            note="strongly typed (TensorRT 10): precision from the ONNX (fp16 casts, Q/DQ)",
        )
    builder_flags = (("FP16",) if config.fp16 else ()) + (("INT8",) if has_qdq else ())
    wanted = (("fp16 kernels", config.fp16), ("explicit INT8 from Q/DQ", has_qdq))
    kinds = [kind for kind, on in wanted if on] or ["fp32 only"]
    return PrecisionPlan(
        trt_version=trt_version,
        trt_major=major,
        strongly_typed=False,
        network_flags=(),
        builder_flags=builder_flags,
        trtexec_flags=tuple(f"--{flag.lower()}" for flag in builder_flags),
        note="weakly typed (TensorRT 10): " + " + ".join(kinds),
    )
