"""Build qtool's quantized BERT from a QDQBERT checkpoint (see `qtoolkit.models.qdqbert`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError
from qtoolkit.models.qdqbert import (
    is_qdqbert_checkpoint,
    qdqbert_bert_config,
    qdqbert_manifest,
    qdqbert_task,
)

__all__ = ["QdqbertImport", "import_qdqbert", "load_qdqbert_checkpoint", "read_state_dict"]


@dataclass
class QdqbertImport:
    """A qtool quantized BERT built from a QDQBERT checkpoint, and what did not line up."""

    model: Any
    tokenizer: Any
    task: str
    quant: Any  # QuantConfig with QDQBERT's placement
    loaded_amax: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # QDQBERT amax without a qtool quantizer
    uncalibrated: list[str] = field(default_factory=list)  # qtool quantizers without an amax

    def warnings(self) -> list[str]:
        out = []
        if self.dropped:
            out.append(
                f"{len(self.dropped)} QDQBERT quantizers have no counterpart in qtool's BERT; "
                f"their amax was dropped: {', '.join(self.dropped[:4])}"
            )
        if self.uncalibrated:
            out.append(
                f"{len(self.uncalibrated)} quantizers have no amax in the QDQBERT checkpoint and "
                f"are left in float (run qtool calibrate to calibrate them): "
                f"{', '.join(self.uncalibrated[:4])}"
            )
        return out


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Every tensor of the checkpoint (safetensors, else a torch pickle read weights-only)."""
    import torch

    path = Path(path)
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise QtoolError(f"no weights in {path} (expected model.safetensors or pytorch_model.bin)")


def _quantized_linears(model, state: dict[str, Any]) -> set[str]:
    """QDQBERT's QuantLinears: every encoder Linear, and any other Linear with an amax key."""
    from torch import nn

    names = set()
    for name, module in model.named_modules():
        if type(module) is not nn.Linear:
            continue
        in_encoder = ".encoder." in f".{name}."
        has_amax = any(
            f"{name}.{q}._amax" in state for q in ("_input_quantizer", "_weight_quantizer")
        )
        if in_encoder or has_amax:
            names.add(name)
    return names


def _weight_per_channel(state: dict[str, Any]) -> bool:
    """QDQBERT's recipes quantized weights per row (amax [out, 1]); honour a per-tensor one."""
    shapes = [v.numel() for k, v in state.items() if k.endswith("._weight_quantizer._amax")]
    return not shapes or max(shapes) > 1


def import_qdqbert(path: str | Path, task: str | None = None, num_bits: int = 8) -> QdqbertImport:
    """Build qtool's BERT for `path`'s head (or `task`), with QDQBERT's quantizers and amax."""
    import torch
    from torch import nn
    from transformers import AutoTokenizer

    from qtoolkit.finite import check_finite_weights
    from qtoolkit.models.loading import quiet_transformers
    from qtoolkit.models.registry import get_arch_spec
    from qtoolkit.quant.insert import insert_quantizers, iter_quantizers
    from qtoolkit.quant.quantized import check_saved_amax, prepare_amax_buffers
    from qtoolkit.recipe import QuantConfig

    quiet_transformers()
    path = Path(path)
    if not is_qdqbert_checkpoint(path):
        raise QtoolError(f"{path} is not a QDQBERT checkpoint (config.json model_type != qdqbert)")
    config = qdqbert_bert_config(path)
    task = task or qdqbert_task(path)
    if task is None:
        raise QtoolError(f"{path}/config.json names no QDQBERT task head; set model.task")
    state = read_state_dict(path)
    model = get_arch_spec("bert").head_class(task)._from_config(config, attn_implementation="eager")
    model.eval()
    quantized = _quantized_linears(model, state)
    skip = sorted(
        n for n, m in model.named_modules() if type(m) is nn.Linear and n not in quantized
    )
    quant = QuantConfig(
        num_bits=num_bits,
        residual_inputs="both",
        weight_per_channel=_weight_per_channel(state),
        skip=skip,
    )
    insert_quantizers(model, quant)
    ours = {f"{n}._amax" for n, _ in iter_quantizers(model)}
    amax = {k: v for k, v in state.items() if k.endswith("._amax")}
    if not amax.keys() & ours:
        raise QtoolError(
            f"{path} holds no amax for any quantizer (a QDQBERT checkpoint saved before "
            f"calibration); calibrate it first: qtool calibrate --model {path}"
        )
    dropped = sorted(k.removesuffix("._amax") for k in amax if k not in ours)
    prepare_amax_buffers(model, {k: v.shape for k, v in amax.items() if k in ours})
    weights = {k: v for k, v in state.items() if not k.endswith("._amax") or k in ours}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in missing if k not in tied and not k.endswith("._amax")]
    # Non-persistent buffers (position ids) may be in old checkpoints: harmless.
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise QtoolError(
            f"{path} does not match BERT with a {task} head "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); check model.task"
        )
    uncalibrated = []
    with torch.no_grad():
        for name, quantizer in iter_quantizers(model):
            if not quantizer._disabled and getattr(quantizer, "_amax", None) is None:
                quantizer.disable()
                uncalibrated.append(name)
    check_finite_weights(model, path)  # a NaN amax is named here, not as NaN logits later
    check_saved_amax(model, path, zero_ok=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise QtoolError(f"no usable tokenizer in {path}: {str(exc).splitlines()[0]}") from None
    return QdqbertImport(
        model=model,
        tokenizer=tokenizer,
        task=task,
        quant=quant,
        loaded_amax=sorted(k.removesuffix("._amax") for k in amax if k in ours),
        dropped=dropped,
        uncalibrated=uncalibrated,
    )


def load_qdqbert_checkpoint(path: str | Path, device: str = "cpu"):
    """A `QuantizedCheckpoint` from a QDQBERT folder; what did not line up is warned about
    (Python warnings, shown once on stderr) and listed in `manifest["notices"]`."""
    import warnings

    from qtoolkit.errors import QtoolWarning
    from qtoolkit.models.registry import get_arch_spec
    from qtoolkit.quant.quantized import QuantizedCheckpoint

    imported = import_qdqbert(path)
    notices = imported.warnings()
    for message in notices:
        warnings.warn(f"{path}: {message}", QtoolWarning, stacklevel=2)
    manifest = {
        **qdqbert_manifest(path),
        "task": imported.task,
        "quant": imported.quant.model_dump(mode="json"),
        "disabled_quantizers": imported.uncalibrated,
        "loaded_amax": len(imported.loaded_amax),
        "notices": notices,
    }
    return QuantizedCheckpoint(
        imported.model.to(device), imported.tokenizer, get_arch_spec("bert"), manifest
    )
