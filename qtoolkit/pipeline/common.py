"""Helpers shared by stage functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["resolve_device", "batch_forward_loop"]


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
