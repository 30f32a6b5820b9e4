"""Helpers shared by stage functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["resolve_device", "batch_forward_loop", "quant_source"]


def resolve_device(name: str) -> str:
    import torch

    from qtoolkit.errors import QtoolError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise QtoolError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    return name


def batch_forward_loop(
    batches: Sequence[dict], device: str, description: str = "calibrating"
) -> Callable:
    """A forward loop over pre-tokenized batches, with a progress bar."""
    from qtoolkit.ui import track

    def loop(model) -> None:
        for batch in track(batches, description, total=len(batches)):
            model(**{k: v.to(device) for k, v in batch.items()})

    return loop


def quant_source(recipe):
    """The model the quantization stages start from: the recipe's fine-tuned checkpoint when
    that stage has run (its output holds a qtoolkit-float manifest), else `model.path`."""
    import json

    finetuned = recipe.stage_dir("finetuned")
    marker = finetuned / "qtoolkit.json"
    if marker.is_file() and json.loads(marker.read_text()).get("format") == "qtoolkit-float":
        cfg = recipe.model.model_copy(update={"path": str(finetuned), "random_init": False})
        return cfg, [f"using the fine-tuned checkpoint {finetuned}"]
    return recipe.model, []
