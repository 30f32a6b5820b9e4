"""Which TensorRT typing mode and builder flags a build uses, decided from the version alone.

TensorRT 10 builds weakly typed networks by default: builder flags (FP16, INT8) widen the kernels
TensorRT may pick, and a network with Q/DQ nodes is quantized explicitly (the INT8 flag is set
for it, as the Q/DQ layers carry INT8 tensors). TensorRT 10 can also build strongly typed networks
(`NetworkDefinitionCreationFlag.STRONGLY_TYPED`, trtexec `--stronglyTyped`), where every tensor's
type comes from the ONNX and no precision flag may be set.

TensorRT 11 removed weak typing: `BuilderFlag.FP16/INT8/...` and trtexec `--fp16/--int8/--best`
are gone and every network is strongly typed (the creation flag is accepted but ignored, and
`--stronglyTyped` is no longer needed). Precision then comes only from the ONNX: fp16 casts for
the float parts (`export.fp16`) and Q/DQ for INT8. An fp32 QDQ ONNX therefore builds fp32 + INT8
layers on TensorRT 11 (slower than TensorRT 10's fp16 + INT8 from the same file): the plan says
so in `warnings`, which the build and the dry run print.

Supported: TensorRT 10.8 and newer 10.x (the `trt` extra pins `>=10.8,<11`), and 11.x. The
calls made are checked against the bindings of 10.16 and 11.1 (tests/unit/trt_api_spec.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qtoolkit.errors import QtoolError
from qtoolkit.recipe import EngineConfig

__all__ = [
    "MAX_TRT_MAJOR",
    "MIN_TRT_MAJOR",
    "PrecisionPlan",
    "SUPPORTED_TRT",
    "parse_trt_version",
    "plan_precision",
]

MIN_TRT_MAJOR = 10
MIN_TRT10_MINOR = 8  # 10.8: first 10.x whose trtexec and API match what is used here
MAX_TRT_MAJOR = 11  # newest major whose API the tests check; a newer one is built with a warning
SUPPORTED_TRT = "TensorRT 10.8+ (10.x) and 11.x"
FP32_STRONGLY_TYPED = (
    "the ONNX has no fp16 tensors, so TensorRT {version} (strongly typed) builds its "
    "non-quantized layers in fp32, slower than fp16; re-export with `qtool export-onnx --fp16` "
    "(export.fp16: true) for fp16 + INT8"
)
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
    warnings: tuple[str, ...] = ()  # printed by the build and the dry run, kept in build.json


def parse_trt_version(version: str) -> tuple[int, int, int]:
    """'10.13.3.9' -> (10, 13, 3); missing parts are 0."""
    match = _VERSION.match(str(version))
    if match is None:
        raise QtoolError(f"cannot read the TensorRT version {version!r}")
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


def plan_precision(
    trt_version: str, config: EngineConfig, has_qdq: bool, has_fp16: bool | None = None
) -> PrecisionPlan:
    """Decide typing mode and flags for `trt_version` (pure: no TensorRT import).

    `has_fp16`: whether the ONNX holds fp16 tensors (None: unknown, no warning about it)."""
    major, minor, _ = parse_trt_version(trt_version)
    warnings: list[str] = []
    # A bare major ("10", as --trt-version takes it) names the line, not an old release.
    if major == MIN_TRT_MAJOR and "." in str(trt_version) and minor < MIN_TRT10_MINOR:
        warnings.append(
            f"TensorRT {trt_version} is older than qtoolkit supports ({SUPPORTED_TRT}); "
            "upgrade if the build fails"
        )
    if major > MAX_TRT_MAJOR:
        warnings.append(
            f"TensorRT {trt_version} is newer than qtoolkit supports ({SUPPORTED_TRT}); "
            "building as for TensorRT 11"
        )
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
        if has_fp16 is False:
            warnings.append(FP32_STRONGLY_TYPED.format(version=trt_version))
        kinds = "fp16" if has_fp16 else "fp32" if has_fp16 is False else "float types"
        return PrecisionPlan(
            trt_version=trt_version,
            trt_major=major,
            strongly_typed=True,
            network_flags=(),  # strongly typed by default; the creation flag is ignored
            builder_flags=(),
            trtexec_flags=(),
            note=f"strongly typed (TensorRT 11): {kinds} from the ONNX"
            + (" + explicit INT8 from Q/DQ" if has_qdq else ""),
            warnings=tuple(warnings),
        )
    if config.strongly_typed:
        if has_fp16 is False:
            warnings.append(FP32_STRONGLY_TYPED.format(version=trt_version))
        return PrecisionPlan(
            trt_version=trt_version,
            trt_major=major,
            strongly_typed=True,
            network_flags=("STRONGLY_TYPED",),
            builder_flags=(),
            trtexec_flags=("--stronglyTyped",),
            note="strongly typed (TensorRT 10): precision from the ONNX (fp16 casts, Q/DQ)",
            warnings=tuple(warnings),
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
        warnings=tuple(warnings),
    )
