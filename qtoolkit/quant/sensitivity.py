"""Which quantizers cost the accuracy: switch groups of quantizers off and measure.

Groups are quantizer roles across layers (the name with the layer index replaced by `*`, e.g.
`bert.encoder.layer.*.output.dense._input_quantizer`, the GELU output), or single layers. For
each group the model is evaluated with that group in float and everything else INT8; the gain
over all-INT8 is the group's cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from qtoolkit.quant.insert import iter_quantizers

__all__ = ["quantizer_groups", "measure_sensitivity"]

_LAYER = re.compile(r"\.(layer|layers)\.(\d+)\.")


def quantizer_groups(model: nn.Module, by: str = "role") -> dict[str, list[str]]:
    """Enabled quantizer names grouped by role (`by="role"`) or by layer (`by="layer"`)."""
    groups: dict[str, list[str]] = {}
    for name, q in iter_quantizers(model):
        if q._disabled:
            continue
        if by == "role":
            key = _LAYER.sub(r".\1.*.", name)
        elif by == "layer":
            m = _LAYER.search(name)
            key = f"layer {m.group(2)}" if m else "outside encoder layers"
        else:
            raise ValueError(f"unknown grouping '{by}'")
        groups.setdefault(key, []).append(name)
    return groups


def measure_sensitivity(
    model: nn.Module,
    evaluate: Callable[[nn.Module, str], float],
    groups: dict[str, list[str]],
) -> list[dict]:
    """[{group, quantizers, metric}] with each group disabled in turn, sorted by metric
    (most costly group first). `evaluate(model, label)` returns the metric."""
    quantizers = dict(iter_quantizers(model))
    rows = []
    for group, names in groups.items():
        for n in names:
            quantizers[n].disable()
        try:
            rows.append(
                {"group": group, "quantizers": len(names), "metric": evaluate(model, group)}
            )
        finally:
            for n in names:
                quantizers[n].enable()
    return sorted(rows, key=lambda r: -r["metric"])
