"""Float fallback units: what is put back in float together, and how many GEMMs stay INT8.

A GEMM runs in INT8 only when all of its inputs are quantized, so the unit of fallback is a GEMM
with its quantizers: a Linear/Conv1d (input + weight), Q.K^T (q, k), probs.V (a, v), a
SqueezeBERT MatMulWrapper (lhs, rhs); a residual add's quantizers form a unit that is not a GEMM.
`granularity="role"` merges each unit with the same unit of every other layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from qtoolkit.quant.insert import iter_quantizers
from qtoolkit.quant.roles import (
    ADD_LOCAL,
    ADD_RESIDUAL,
    ATTENTION_MATMUL,
    GEMM_INPUT,
    MATMUL_WRAPPER,
    WEIGHT,
)

__all__ = [
    "FallbackSearch",
    "Score",
    "FallbackUnit",
    "fallback_units",
    "find_fallback",
    "gemm_census",
    "set_float",
]

_LAYER = re.compile(r"\.(layer|layers)\.(\d+)\.")


@dataclass
class FallbackUnit:
    name: str
    quantizers: list[str] = field(default_factory=list)
    gemms: list[str] = field(default_factory=list)  # GEMM unit names inside (empty: an add)
    modules: list[str] = field(default_factory=list)  # Linear/Conv1d modules (their biases)

    def to_dict(self) -> dict:
        return {"name": self.name, "quantizers": self.quantizers, "gemms": len(self.gemms)}


def _unit_of(qname: str) -> tuple[str, bool, str | None]:
    """(unit name, is a GEMM, its Linear/Conv1d module or None) of a quantizer."""
    parent, _, leaf = qname.rpartition(".")
    if leaf in (GEMM_INPUT, WEIGHT):
        return parent, True, parent
    if leaf in ATTENTION_MATMUL[:2]:
        return f"{parent}.qk", True, None
    if leaf in ATTENTION_MATMUL[2:]:
        return f"{parent}.av", True, None
    if leaf in MATMUL_WRAPPER:
        return parent, True, None
    if leaf in (ADD_RESIDUAL, ADD_LOCAL):
        return f"{parent}.add", False, None
    raise ValueError(f"'{qname}' is not a qtoolkit quantizer name")


def _all_units(model: nn.Module, enabled_only: bool) -> dict[str, FallbackUnit]:
    units: dict[str, FallbackUnit] = {}
    for qname, q in iter_quantizers(model):
        if enabled_only and q._disabled:
            continue
        name, is_gemm, module = _unit_of(qname)
        unit = units.setdefault(name, FallbackUnit(name, gemms=[name] if is_gemm else []))
        unit.quantizers.append(qname)
        if module is not None and module not in unit.modules:
            unit.modules.append(module)
    return units


def fallback_units(model: nn.Module, granularity: str = "gemm") -> list[FallbackUnit]:
    """Units made of the model's enabled quantizers, in model order."""
    units = list(_all_units(model, enabled_only=True).values())
    if granularity == "gemm":
        return units
    if granularity != "role":
        raise ValueError(f"unknown granularity '{granularity}'")
    merged: dict[str, FallbackUnit] = {}
    for u in units:
        key = _LAYER.sub(r".\1.*.", u.name)
        m = merged.setdefault(key, FallbackUnit(key))
        m.quantizers += u.quantizers
        m.gemms += u.gemms
        m.modules += u.modules
    return list(merged.values())


def gemm_census(model: nn.Module) -> dict[str, int]:
    """GEMMs in the model (Linear/Conv1d and attention matmuls) and how many run in INT8 (every
    input quantized and enabled). Float Linear/Conv1d without quantizers count as float."""
    quantizers = dict(iter_quantizers(model))
    units = {n: u for n, u in _all_units(model, enabled_only=False).items() if u.gemms}
    int8 = sum(1 for u in units.values() if all(not quantizers[q]._disabled for q in u.quantizers))
    plain = sum(1 for m in model.modules() if type(m) in (nn.Linear, nn.Conv1d))
    total = len(units) + plain
    return {"gemms": total, "int8": int8, "float": total - int8}


def set_float(model: nn.Module, units: list[FallbackUnit], on: bool) -> None:
    """Put `units` in float (`on=True`) or back in INT8."""
    quantizers = dict(iter_quantizers(model))
    for u in units:
        for q in u.quantizers:
            if on:
                quantizers[q].disable()
            else:
                quantizers[q].enable()


@dataclass(frozen=True)
class Score:
    """A dev score: `value` is what the target is set on (higher is better); `drift`, when
    known, is the output error against fp32 (lower is better). Drift ranks the units: one
    GEMM alone in float rarely flips a prediction among a thousand, so ranking by the metric
    alone is mostly noise, while the output error moves with every quantizer."""

    value: float
    drift: float | None = None


def _as_score(x: float | Score) -> Score:
    return x if isinstance(x, Score) else Score(float(x))


@dataclass
class FallbackSearch:
    """The ranking (each unit alone in float, best first), the steps tried (top-k in float,
    k = 0, 1, ...) and the chosen units; `met` says whether the target was reached."""

    start: float
    start_drift: float | None = None
    ranking: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    chosen: list[FallbackUnit] = field(default_factory=list)
    met: bool = False


def find_fallback(
    model: nn.Module,
    units: list[FallbackUnit],
    score: Callable[[nn.Module, str], float | Score],
    target: float,
    max_fallback: int | None = None,
    toggle: Callable[[list[FallbackUnit], bool], None] | None = None,
) -> FallbackSearch:
    """The fewest units to leave in float for `score(model, label).value >= target`.

    Each unit is scored alone in float (the sensitivity ranking: by drift when `score` gives
    a `Score` with one, else by value); then the k best are put in float for k = 1, 2, ...
    until the target is met, `max_fallback` is reached or no unit left helps. `toggle(units,
    on)` runs after units go to float (on=True) or back, e.g. to revert bias corrections. The
    model is left with the chosen units in float.
    """

    def switch(chosen: list[FallbackUnit], on: bool) -> None:
        set_float(model, chosen, on)
        if toggle is not None:
            toggle(chosen, on)

    first = _as_score(score(model, "start"))
    search = FallbackSearch(start=first.value, start_drift=first.drift)
    search.steps.append({"k": 0, "score": first.value, "drift": first.drift, "units": []})
    if first.value >= target:
        search.met = True
        return search
    by_drift = first.drift is not None
    for unit in units:
        switch([unit], True)
        try:
            s = _as_score(score(model, unit.name))
            search.ranking.append({"unit": unit, "score": s.value, "drift": s.drift})
        finally:
            switch([unit], False)
    if by_drift:
        search.ranking.sort(key=lambda r: (r["drift"], -r["score"]))
        helpful = [r["unit"] for r in search.ranking if r["drift"] < first.drift]
    else:
        search.ranking.sort(key=lambda r: -r["score"])
        helpful = [r["unit"] for r in search.ranking if r["score"] > first.value]
    limit = len(helpful) if max_fallback is None else min(max_fallback, len(helpful))
    best, best_k, switched = first, 0, 0
    for k in range(1, limit + 1):
        switch([helpful[k - 1]], True)
        switched = k
        s = _as_score(score(model, f"top {k} in float"))
        search.steps.append(
            {"k": k, "score": s.value, "drift": s.drift, "units": [u.name for u in helpful[:k]]}
        )
        if s.value >= target or s.value > best.value:
            best, best_k = s, k
        if s.value >= target:
            search.met = True
            break
    # Target not met: keep the best step seen, undo the rest.
    if switched > best_k:
        switch(helpful[best_k:switched], False)
    search.chosen = helpful[:best_k]
    return search
