"""Accuracy against latency as a PNG (matplotlib, Agg backend, imported only here).

Drawn so that a reader can trust it: every accuracy point carries its 95% interval as an error
bar, each backend's agreement with the float reference is shown with its interval, a difference
whose interval contains 0 is labelled a tie, and the accuracy axis spans at least
`MIN_SPAN_POINTS`, so that a half-point tie does not fill the panel like a cliff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["MIN_SPAN_POINTS", "accuracy_axis", "plot_accuracy_latency"]

MIN_SPAN_POINTS = 5.0  # the accuracy axis never spans less than this many points


@dataclass(frozen=True)
class _Point:
    value: float  # in percent with an interval, else in the metric's own units
    low: float | None
    high: float | None


def _point(entry: Mapping[str, Any], metric: str, percent: bool) -> _Point:
    """In percent with its interval, or (when some backend has no interval) the bare metric."""
    iv = entry.get("metric_interval")
    if percent and iv:
        return _Point(100 * iv["value"], 100 * iv["low"], 100 * iv["high"])
    return _Point(float(entry["metrics"][metric]), None, None)


def accuracy_axis(points: Sequence[_Point], percent: bool) -> tuple[float, float]:
    """Limits that hold every point and interval, span at least MIN_SPAN_POINTS (in percent;
    5% of the largest value otherwise) and stay within 0-100 for a percentage."""
    lows = [p.low if p.low is not None else p.value for p in points]
    highs = [p.high if p.high is not None else p.value for p in points]
    lo, hi = min(lows), max(highs)
    floor = MIN_SPAN_POINTS if percent else 0.05 * max(abs(lo), abs(hi), 1e-9)
    span = max(hi - lo, floor) * 1.2
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2, mid + span / 2
    if percent:
        lo, hi = (0.0, span) if lo < 0 else (lo, hi)
        lo, hi = (100.0 - span, 100.0) if hi > 100 else (lo, hi)
    return lo, hi


def _pct(iv: Mapping[str, float]) -> str:
    return f"{100 * iv['value']:.1f}% [{100 * iv['low']:.1f}, {100 * iv['high']:.1f}]"


def _difference_label(entry: Mapping[str, Any]) -> str | None:
    """'-0.5 pts, tie', '-1.2 pts', or None when the scores equal the reference's on every
    example."""
    delta = entry.get("delta")
    if delta and delta["low"] == delta["high"] == 0:
        return None
    if delta:
        tie = ", tie" if delta["low"] <= 0 <= delta["high"] else ""
        return f"{100 * delta['value']:+.1f} pts{tie}"
    if entry.get("delta_points") is not None:
        return f"{entry['delta_points']:+.1f} pts (no interval)"
    return None


def plot_accuracy_latency(
    rows: Sequence[Mapping[str, Any]],
    accuracy: Mapping[str, Mapping[str, Any]],
    metric: str,
    path: Path,
) -> Path:
    """One panel per batch x sequence shape, one point per backend: p50 latency against the
    backend's `metric` with its interval, colour by backend, each labelled tie or with its
    difference from the float reference; below, every backend's agreement with that reference
    and its interval. QtoolError when there is nothing to plot or no matplotlib."""
    points = [
        (r, accuracy[r["backend"]])
        for r in rows
        if "p50_ms" in r and metric in accuracy.get(r["backend"], {}).get("metrics", {})
    ]
    if not points:
        raise QtoolError("no backend has both a latency and an accuracy to plot")
    try:
        import matplotlib
    except ImportError:
        raise QtoolError("matplotlib is not installed: no plot (pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r, _ in points))
    shapes = list(dict.fromkeys((r["batch"], r["seq"]) for r, _ in points))
    # A metric without per-example scores (entity F1) has no interval: values without bars.
    percent = all(accuracy[b].get("metric_interval") for b in backends)
    marks = {b: _point(accuracy[b], metric, percent) for b in backends}
    reference = next((e.get("agreement_with") for _, e in points if e.get("agreement_with")), None)
    agreeing = [b for b in backends if accuracy[b].get("agreement_interval") and b != reference]

    cols = min(len(shapes), 3)
    rows_n = (len(shapes) + cols - 1) // cols
    agree_h = 0.35 * len(agreeing) + 0.9 if agreeing else 0.0
    colours = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(4.2 * cols, 3.6 * rows_n + agree_h + 0.9), dpi=110)
    heights = [3.6] * rows_n + ([agree_h] if agreeing else [])
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
    try:
        first = None
        for i, shape in enumerate(shapes):
            ax = fig.add_subplot(grid[i // cols, i % cols], sharey=first)
            first = first or ax
            for r, entry in points:
                if (r["batch"], r["seq"]) != shape:
                    continue
                b, m = r["backend"], marks[r["backend"]]
                colour = colours(backends.index(b) % 10)
                yerr = None if m.low is None else [[m.value - m.low], [m.high - m.value]]
                ax.errorbar(r["p50_ms"], m.value, yerr=yerr, fmt="o", ms=6, capsize=4, color=colour)
                label = None if b == reference else _difference_label(entry)
                if label:
                    ax.annotate(
                        label,
                        (r["p50_ms"], m.value),
                        xytext=(6, 4),
                        textcoords="offset points",
                        fontsize=7,
                        color=colour,
                    )
            if reference in marks:
                ax.axhline(marks[reference].value, color="0.5", lw=0.8, ls="--")
            ax.set_title(f"batch {shape[0]} x seq {shape[1]}", fontsize=10)
            slowest = max(r["p50_ms"] for r, _ in points if (r["batch"], r["seq"]) == shape)
            ax.set_xlim(0, 1.15 * slowest)  # room for the last point's bar and label
            ax.set_xlabel("p50 latency (ms)")
            ax.grid(True, alpha=0.3)
            if i % cols == 0:
                ax.set_ylabel(f"{metric} (%, 95% interval)" if percent else metric)
        first.set_ylim(*accuracy_axis(list(marks.values()), percent))
        if agreeing:
            ax = fig.add_subplot(grid[rows_n, :])
            for y, b in enumerate(agreeing):
                iv = accuracy[b]["agreement_interval"]
                v, lo, hi = (100 * iv[k] for k in ("value", "low", "high"))
                colour = colours(backends.index(b) % 10)
                ax.errorbar(v, y, xerr=[[v - lo], [hi - v]], fmt="o", capsize=4, color=colour)
                ax.annotate(
                    _pct(iv),
                    (lo, y),
                    xytext=(-8, -3),
                    textcoords="offset points",
                    fontsize=7,
                    ha="right",
                )
            lows = [100 * accuracy[b]["agreement_interval"]["low"] for b in agreeing]
            ax.set_xlim(min(90.0, min(lows) - 1.0), 100.5)
            ax.set_ylim(-0.6, len(agreeing) - 0.4)
            ax.set_yticks(range(len(agreeing)), agreeing, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(f"agreement with {reference} (% of predictions, 95% interval)")
            ax.grid(True, axis="x", alpha=0.3)
        handles = [
            plt.Line2D([], [], marker="o", linestyle="", color=colours(i % 10), label=name)
            for i, name in enumerate(backends)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(backends), 5), fontsize=8)
        note = "" if percent else f" (no {metric} interval in these results)"
        ref = f"; dashed: {reference}" if reference in marks else ""
        fig.suptitle(f"{metric} against latency{ref}{note}", fontsize=11)
        fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(backends) > 5), 1, 1))
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
