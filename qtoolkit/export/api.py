"""`export_onnx`: quantized checkpoint -> validated, TensorRT-checked QDQ ONNX file."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtoolkit.errors import QtoolError
from qtoolkit.export.check import (
    QUANT_METADATA_KEY,
    TARGET_METADATA_KEY,
    Violation,
    check_model_proto,
)
from qtoolkit.export.validate import ValidationReport

if TYPE_CHECKING:
    from torch import nn

    from qtoolkit.export.ort_optimize import GemmCensus
    from qtoolkit.quant.checkpoint import QuantizedCheckpoint
    from qtoolkit.recipe import ExportConfig, QuantConfig

__all__ = ["ExportResult", "export_onnx", "effective_quant_config", "fp32_path_for"]

# Float GEMMs are validated against torch float with this tolerance (only op order differs).
FP32_BASELINE_ATOL = 1e-3
# With fp16 the tolerance is this multiple of the int8 one unless export.fp16_atol is set.
FP16_ATOL_FACTOR = 2.0


@dataclass
class ExportResult:
    path: Path
    architecture: str
    task: str
    target: str
    opset: int
    fp16: bool
    external_data: bool
    validation: ValidationReport
    violations: list[Violation]
    op_counts: dict[str, int]
    folded_weights: int
    split_pairs: int
    seconds: float
    fp32_path: Path | None = None
    fp32_validation: ValidationReport | None = None
    notices: list[str] = field(default_factory=list)
    convs_as_matmuls: int = 0
    grouped_regions: int = 0  # GELUs kept in the grouped layout between two grouped GEMMs
    channels_last_transposes: int = 0  # Transposes saved by the [B, S, C] residual stream
    merged_head_views: int = 0  # GEMM -> HF head layout views done as one 5-D Transpose
    # What ONNX Runtime's CPU optimizer left of the graph (CPU layout only).
    ort_census: GemmCensus | None = None

    def summary(self) -> str:
        """What the CLI prints: files, graph contents, validation and the TensorRT check."""
        from qtoolkit.export.check import format_violations

        precision = "int8 + fp16" if self.fp16 else "int8 + fp32"
        ops = self.op_counts
        checked = format_violations(self.violations)
        if self.target == "onnxruntime" and not self.violations:
            # uint8 activations (zero point 128) are not checked in the CPU layout.
            checked = (
                "TensorRT's Q/DQ placement rules: no violations (activations are uint8 in this "
                "CPU layout; export with target tensorrt for TensorRT)"
            )
        gemms = ", ".join(f"{ops[k]} {k}" for k in ("MatMul", "Gemm", "Conv") if ops.get(k))
        lines = [
            f"wrote {self.path} ({self.architecture} {self.task}, opset {self.opset}, "
            f"{precision}, Q/DQ layout for {self.target})",
            f"  {ops.get('QuantizeLinear', 0)} QuantizeLinear, "
            f"{ops.get('DequantizeLinear', 0)} DequantizeLinear, {self.folded_weights} int8 "
            f"weight tensors; {gemms}",
            f"  validated in ONNX Runtime: {self.validation.summary()}",
            "  " + checked.replace("\n", "\n  "),
        ]
        if self.convs_as_matmuls:
            lines.insert(
                2,
                f"  CPU layout: {self.convs_as_matmuls} pointwise convolutions as MatMuls, "
                f"{self.grouped_regions} GELUs in the grouped layout, hidden states as "
                f"[batch, seq, channels] ({self.channels_last_transposes} Transposes fewer, "
                f"{self.merged_head_views} head views as one Transpose)",
            )
        if self.ort_census is not None:
            lines.append("  " + self.ort_census.summary())
        if self.fp32_path is not None and self.fp32_validation is not None:
            lines.append(
                f"wrote {self.fp32_path} (float baseline): {self.fp32_validation.summary()}"
            )
        lines += self.notices
        return "\n".join(lines)


def fp32_path_for(path: str | Path) -> Path:
    """`out/model.onnx` -> `out/model.fp32.onnx`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.fp32{path.suffix or '.onnx'}")


def _resolve(source) -> tuple[Any, Any, str]:
    """(model, quant config or None, task) from a path, a QuantizedCheckpoint or a module."""
    from qtoolkit.quant.checkpoint import QuantizedCheckpoint, load_quantized, task_of
    from qtoolkit.recipe import QuantConfig

    if isinstance(source, (str, Path)):
        source = load_quantized(source)
    if isinstance(source, QuantizedCheckpoint):
        cfg = QuantConfig.model_validate(source.manifest["quant"])
        return source.model, cfg, source.manifest.get("task") or task_of(source.model)
    if hasattr(source, "config") and hasattr(source, "forward"):
        return source, None, task_of(source)
    raise QtoolError(f"cannot export a {type(source).__name__}: pass a checkpoint directory")


def effective_quant_config(model: nn.Module, quant_cfg: QuantConfig | None = None) -> QuantConfig:
    """The quant config that describes what `model` actually quantizes.

    Starts from `quant_cfg` (or from the quantizers present), and adds to `skip` every disabled
    quantizer and every GEMM module left in float, so the TensorRT check expects Q/DQ exactly
    where the model has them.
    """
    from torch import nn

    from qtoolkit.quant.insert import iter_quantizers
    from qtoolkit.quant.roles import ADD_LOCAL, role_of
    from qtoolkit.recipe import QuantConfig

    quantizers = list(iter_quantizers(model))
    if quant_cfg is None:
        names = [n for n, _ in quantizers]
        quant_cfg = QuantConfig(
            linear=any(type(m).__name__ == "QuantLinear" for m in model.modules()),
            conv1d=any(type(m).__name__ == "QuantConv1d" for m in model.modules()),
            attention_matmul=any(role_of(n).group == "attention_matmul" for n in names),
            residual_add=any(role_of(n).group == "residual_add" for n in names),
            residual_inputs="both" if any(n.endswith(ADD_LOCAL) for n in names) else "residual",
        )
    skip = list(quant_cfg.skip)
    skip += [n for n, q in quantizers if q._disabled]
    skip += [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv1d)]
    return quant_cfg.model_copy(update={"skip": sorted(set(skip))})


def _require_calibrated(model) -> None:
    from qtoolkit.quant.insert import is_quantized, iter_quantizers

    if not is_quantized(model):
        raise QtoolError("model has no quantizers: export a calibrated or QAT checkpoint")
    for name, quantizer in iter_quantizers(model):
        if not quantizer._disabled and getattr(quantizer, "_amax", None) is None:
            raise QtoolError(f"quantizer {name} has no amax: calibrate the model before export")


def _metadata(model_proto, items: Mapping[str, str]) -> None:
    del model_proto.metadata_props[:]
    for key, value in items.items():
        prop = model_proto.metadata_props.add()
        prop.key, prop.value = key, value


def _stage_validate_move(
    proto, out: Path, validate, notices: list[str]
) -> tuple[ValidationReport, bool]:
    """Write `proto` next to `out`, validate it there, then move it into place."""
    from qtoolkit.export.save import external_data_path, move_onnx, write_onnx
    from qtoolkit.fsutil import temp_dir_beside

    stage = temp_dir_beside(out)
    try:
        staged = write_onnx(proto, stage / out.name)
        external = external_data_path(staged).exists()
        report = validate(staged)
        move_onnx(staged, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if external:
        notices.append(f"{out.name} is over 2 GB: weights are in {external_data_path(out).name}")
    return report, external


def export_onnx(
    source: str | Path | QuantizedCheckpoint | nn.Module,
    out_path: str | Path,
    cfg: ExportConfig,
    sample_batches: Sequence[Mapping[str, Any]],
    quant_cfg: QuantConfig | None = None,
) -> ExportResult:
    """Export a calibrated or QAT model to a QDQ ONNX file, validated against PyTorch.

    `source` is a checkpoint directory, a `QuantizedCheckpoint` or a quantized model; `cfg` an
    `ExportConfig`; `sample_batches` tokenized batches (dicts of tensors) used to trace the
    export and to compare ONNX Runtime with PyTorch. Nothing is written if validation fails
    (QtoolError). TensorRT-rule violations are returned in `violations`, not raised.
    """
    import torch

    from qtoolkit.export.fp16 import convert_to_fp16
    from qtoolkit.export.ort_optimize import ort_gemm_census
    from qtoolkit.export.qdq_passes import optimize_qdq
    from qtoolkit.export.torch_export import export_model_proto, float_mode
    from qtoolkit.export.validate import validate_onnx
    from qtoolkit.models.registry import spec_for_config
    from qtoolkit.version import __version__

    start = time.perf_counter()
    if not sample_batches:
        raise QtoolError("export needs tokenized sample batches (for tracing and validation)")
    out = Path(out_path)
    if out.suffix != ".onnx":
        raise QtoolError(f"output must be a .onnx file, not {out}")
    model, manifest_cfg, task = _resolve(source)
    _require_calibrated(model)
    spec = spec_for_config(model.config)
    eff_cfg = effective_quant_config(model, quant_cfg or manifest_cfg)
    atol = cfg.atol if cfg.atol is not None else spec.onnx_atol
    if cfg.fp16:
        atol = cfg.fp16_atol if cfg.fp16_atol is not None else atol * FP16_ATOL_FACTOR
    notices: list[str] = []

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    model.to("cpu", torch.float32)
    try:
        proto = export_model_proto(model, task, sample_batches[0], cfg.opset, exporter=cfg.exporter)
        passes = optimize_qdq(proto, split_shared=cfg.target == "onnxruntime")
        if cfg.target == "openvino":
            from qtoolkit.export.ov_layout import smooth_scale_to_quantizer

            passes.smooth_scales_moved = smooth_scale_to_quantizer(proto)
        if cfg.fp16:
            proto = convert_to_fp16(proto)
        proto.producer_name = "qtoolkit"
        proto.producer_version = __version__
        _metadata(
            proto,
            {
                QUANT_METADATA_KEY: json.dumps(eff_cfg.model_dump(mode="json")),
                "qtoolkit.task": task,
                "qtoolkit.architecture": spec.name,
                TARGET_METADATA_KEY: cfg.target,
                "qtoolkit.fp16": str(cfg.fp16).lower(),
                "qtoolkit.exporter": cfg.exporter,
            },
        )
        violations = check_model_proto(proto, eff_cfg)
        op_counts = dict(Counter(n.op_type for n in proto.graph.node))

        def validate(path: Path) -> ValidationReport:
            return validate_onnx(path, model, sample_batches, atol, cfg.min_argmax_agreement)

        report, external = _stage_validate_move(proto, out, validate, notices)
        del proto
        census = ort_gemm_census(out) if cfg.target == "onnxruntime" else None
        fp32_path = fp32_report = None
        if cfg.fp32_baseline:
            fp32_path = fp32_path_for(out)
            proto32 = export_model_proto(
                model, task, sample_batches[0], cfg.opset, False, exporter=cfg.exporter
            )

            def validate32(path: Path) -> ValidationReport:
                with float_mode(model):
                    return validate_onnx(
                        path, model, sample_batches, FP32_BASELINE_ATOL, cfg.min_argmax_agreement
                    )

            fp32_report, _ = _stage_validate_move(proto32, fp32_path, validate32, notices)
    finally:
        model.to(device, dtype)
    return ExportResult(
        path=out,
        architecture=spec.name,
        task=task,
        target=cfg.target,
        opset=cfg.opset,
        fp16=cfg.fp16,
        external_data=external,
        validation=report,
        violations=violations,
        op_counts=op_counts,
        folded_weights=passes.folded_weights,
        split_pairs=passes.split_pairs,
        seconds=time.perf_counter() - start,
        fp32_path=fp32_path,
        fp32_validation=fp32_report,
        notices=notices,
        convs_as_matmuls=passes.convs_as_matmuls,
        grouped_regions=passes.grouped_regions,
        channels_last_transposes=passes.channels_last_transposes,
        merged_head_views=passes.merged_head_views,
        ort_census=census,
    )
