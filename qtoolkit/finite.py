"""Finite checks: a model whose weights or outputs hold NaN or inf is refused with the tensor
named, instead of calibrating, scoring ("accuracy 0.5000") or saving garbage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["check_finite_outputs", "check_finite_weights", "first_nonfinite", "nonfinite_kind"]


def nonfinite_kind(values: Any) -> str | None:
    """'nan', 'inf' or None for a torch tensor or numpy array (non-float: None)."""
    import numpy as np

    if hasattr(values, "detach"):  # torch
        if not values.is_floating_point():
            return None
        values = values.detach()
        if bool(values.isfinite().all()):
            return None
        return "nan" if bool(values.isnan().any()) else "inf"
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating) or np.isfinite(values).all():
        return None
    return "nan" if np.isnan(values).any() else "inf"


def first_nonfinite(named: Iterable[tuple[str, Any]]) -> tuple[str, str] | None:
    """(name, 'nan'|'inf') of the first tensor holding a non-finite value, or None."""
    for name, values in named:
        kind = nonfinite_kind(values)
        if kind is not None:
            return name, kind
    return None


def check_finite_weights(model: Any, source: object) -> None:
    """Refuse a model (read from `source`) with a NaN or inf parameter or buffer."""
    import itertools

    found = first_nonfinite(itertools.chain(model.named_parameters(), model.named_buffers()))
    if found is not None:
        name, kind = found
        raise QtoolError(
            f"{source}: tensor '{name}' holds {kind} values; the checkpoint is broken "
            "(re-train it or take another one)"
        )


def check_finite_outputs(outputs: Mapping[str, Any], what: str) -> None:
    """Refuse model outputs (`what`: which model, which batch) holding NaN or inf."""
    found = first_nonfinite(outputs.items())
    if found is not None:
        name, kind = found
        raise QtoolError(
            f"{what}: output '{name}' holds {kind} values, so it cannot be scored; the model "
            "is broken (check its weights and amax with qtool inspect)"
        )
