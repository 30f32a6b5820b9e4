"""Quantized checkpoints: a directory that reloads on any machine, CPU-only included.

Layout::

    manifest           artifacts.MARKER: format, architecture, task, quant config, stage info
    config.json        Hugging Face config of the float model
    tokenizer files
    model.safetensors  every parameter and buffer, quantizer amax values included
    amax.json, amax.md every quantizer's amax, for people and scripts

Loading rebuilds the float model from config.json, inserts quantizers with the saved config,
creates each `_amax` buffer on the CPU with its saved shape, then loads the state dict. Creating
the buffers first is what keeps pytorch-quantization's state-dict hook off its CUDA-only path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qtoolkit.artifacts import (
    AMAX_JSON,
    AMAX_MD,
    MARKER,
    WEIGHTS,
    Kind,
    new_manifest,
    writing_dir,
)
from qtoolkit.artifacts import read_manifest as read_artifact_manifest
from qtoolkit.errors import QtoolError, write_failed
from qtoolkit.fsutil import write_json
from qtoolkit.models.registry import HEAD_SUFFIX, spec_for_config
from qtoolkit.quant.insert import insert_quantizers, iter_quantizers
from qtoolkit.quant.quantized import QuantizedCheckpoint, check_saved_amax, prepare_amax_buffers
from qtoolkit.quant.report import amax_markdown, amax_records
from qtoolkit.quant.smoothquant import restore_smoothing
from qtoolkit.recipe import QuantConfig

__all__ = [
    "FORMAT_VERSION",
    "QuantizedCheckpoint",
    "load_quantized",
    "prepare_amax_buffers",
    "read_manifest",
    "save_quantized",
    "task_of",
]

FORMAT_VERSION = 1


def task_of(model: nn.Module) -> str:
    name = type(model).__name__
    for task, suffix in HEAD_SUFFIX.items():
        if name.endswith(suffix):
            return task
    raise QtoolError(f"cannot tell the task of a {name}")


def save_quantized(
    model: nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    quant_cfg: QuantConfig,
    info: dict[str, Any] | None = None,
    inputs: tuple[str | Path | None, ...] = (),
) -> Path:
    """Write `model` (with quantizers) to `out_dir` atomically. `info` goes into the manifest;
    `inputs` (the files it was made from) must not be overwritten (see qtoolkit.artifacts)."""
    from safetensors.torch import save_model

    spec = spec_for_config(model.config)
    records = amax_records(model)
    manifest = new_manifest(
        Kind.QUANTIZED,
        format_version=FORMAT_VERSION,
        architecture=spec.name,
        task=task_of(model),
        quant=quant_cfg.model_dump(mode="json"),
        disabled_quantizers=[r["name"] for r in records if not r["enabled"]],
        **(info or {}),
    )
    out_dir = Path(out_dir)
    with writing_dir(out_dir, Kind.QUANTIZED, inputs) as tmp:
        model.config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        device = next(model.parameters()).device
        try:
            save_model(model.to("cpu"), str(tmp / WEIGHTS))
        except Exception as exc:  # noqa: BLE001 - safetensors hides a full disk in its own error
            raise write_failed(out_dir / WEIGHTS, exc) from None
        finally:
            model.to(device)
        (tmp / AMAX_JSON).write_text(json.dumps(records, indent=1) + "\n")
        (tmp / AMAX_MD).write_text(amax_markdown(records))
        write_json(tmp / MARKER, manifest)
    return out_dir


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a quantized checkpoint; one line if `path` is not one. A QDQBERT folder
    (transformers' removed QDQBERT format) gets a manifest made from its config."""
    from qtoolkit.models.qdqbert import is_qdqbert_checkpoint, qdqbert_manifest

    if Path(path).is_dir() and is_qdqbert_checkpoint(path):
        return qdqbert_manifest(path)
    manifest = read_artifact_manifest(path, Kind.QUANTIZED)
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise QtoolError(
            f"{path} was written by a newer qtoolkit (format {manifest['format_version']})"
        )
    return manifest


def _checkpoint_config(path: Path, manifest: dict[str, Any]):
    """(config, spec) from the checkpoint's config.json, which must be there, readable and of
    the architecture its manifest names."""
    from transformers import AutoConfig

    config_path = path / "config.json"
    if not config_path.is_file():
        raise QtoolError(f"{config_path} is missing; the checkpoint is incomplete (save it again)")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:
        first = str(exc).splitlines()[0]
        raise QtoolError(f"cannot read {config_path}: {first}") from None
    try:
        spec = spec_for_config(config)
    except QtoolError as exc:
        raise QtoolError(f"{config_path}: {exc}") from None
    if spec.name != manifest.get("architecture", spec.name):
        raise QtoolError(
            f"{config_path} is a {spec.name} config, but the checkpoint was written for "
            f"{manifest['architecture']}: restore its config.json (or save it again)"
        )
    return config, spec


def load_quantized(path: str | Path, device: str = "cpu") -> QuantizedCheckpoint:
    """Rebuild a quantized model saved by `save_quantized`, on `device` (default CPU)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    from qtoolkit.finite import check_finite_weights
    from qtoolkit.models.loading import corrupt_weights, load_tokenizer, quiet_transformers

    quiet_transformers()
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("source_format") == "qdqbert":
        from qtoolkit.quant.qdqbert_import import load_qdqbert_checkpoint

        return load_qdqbert_checkpoint(path, device)
    config, spec = _checkpoint_config(path, manifest)
    model = spec.head_class(manifest["task"])._from_config(config, attn_implementation="eager")
    model.eval()
    insert_quantizers(model, QuantConfig.model_validate(manifest["quant"]))
    weights = path / WEIGHTS
    if not weights.is_file():
        raise QtoolError(f"{weights} is missing; the checkpoint is incomplete (save it again)")
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: torch.Size(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        prepare_amax_buffers(model, shapes)
        restore_smoothing(model, shapes)  # SmoothQuant's scale buffers and their hooks, if any
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        raise corrupt_weights(exc, weights) from None
    # Tied weights are stored once; anything else missing means a mismatched checkpoint.
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise QtoolError(
            f"{weights} does not match the model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    check_finite_weights(model, weights)
    check_saved_amax(model, weights)
    disabled = set(manifest.get("disabled_quantizers", []))
    for name, quantizer in iter_quantizers(model):
        if name in disabled:
            quantizer.disable()
    tokenizer = load_tokenizer(path, "; the checkpoint is incomplete (save it again)")
    return QuantizedCheckpoint(model.to(device), tokenizer, spec, manifest)
