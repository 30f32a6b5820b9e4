"""QDQ ONNX export, validation against PyTorch, and TensorRT-readiness checks.

Importing this package loads onnx and numpy only; torch and onnxruntime are imported by the
functions that need them.
"""

from qtoolkit.export.api import ExportResult, export_onnx, fp32_path_for
from qtoolkit.export.check import RULES, Violation, check_onnx, format_violations
from qtoolkit.export.fp16 import convert_to_fp16
from qtoolkit.export.validate import ValidationReport, validate_onnx

__all__ = [
    "RULES",
    "ExportResult",
    "ValidationReport",
    "Violation",
    "check_onnx",
    "convert_to_fp16",
    "export_onnx",
    "format_violations",
    "fp32_path_for",
    "validate_onnx",
]
