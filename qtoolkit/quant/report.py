"""Readable views of a quantized model's quantizers: records, JSON and a Markdown table."""

from __future__ import annotations

from typing import Any

from torch import nn

from qtoolkit.quant.insert import iter_quantizers
from qtoolkit.quant.roles import is_weight_quantizer

__all__ = ["amax_records", "amax_markdown"]


def amax_records(model: nn.Module) -> list[dict[str, Any]]:
    """One record per quantizer: name, kind, granularity, state and amax (list if per channel)."""
    records = []
    for name, q in iter_quantizers(model):
        amax = getattr(q, "_amax", None)
        record: dict[str, Any] = {
            "name": name,
            "kind": "weight" if is_weight_quantizer(name) else "activation",
            "axis": list(q.axis) if isinstance(q.axis, tuple) else q.axis,
            "num_bits": q.num_bits,
            "enabled": not q._disabled,
            "amax": None,
        }
        if amax is not None:
            values = amax.detach().float().cpu().flatten()
            record["amax"] = float(values[0]) if values.numel() == 1 else values.tolist()
            record["amax_min"] = float(values.min())
            record["amax_max"] = float(values.max())
        records.append(record)
    return records


def _fmt(record: dict[str, Any]) -> str:
    if record["amax"] is None:
        return "-"
    if isinstance(record["amax"], list):
        n = len(record["amax"])
        return f"[{record['amax_min']:.4g} .. {record['amax_max']:.4g}] ({n} ch)"
    return f"{record['amax']:.4g}"


def amax_markdown(records: list[dict[str, Any]]) -> str:
    lines = ["| quantizer | kind | amax | state |", "|---|---|---|---|"]
    for r in records:
        state = "on" if r["enabled"] else "off"
        lines.append(f"| `{r['name']}` | {r['kind']} | {_fmt(r)} | {state} |")
    return "\n".join(lines) + "\n"


def amax_cell(record: dict[str, Any]) -> str:
    """The amax column as shown in tables."""
    return _fmt(record)
