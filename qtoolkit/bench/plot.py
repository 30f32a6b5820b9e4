"""Accuracy against latency as a PNG (matplotlib, Agg backend, imported only here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qtoolkit.errors import QtoolError

__all__ = ["plot_accuracy_latency"]


def plot_accuracy_latency(
    rows: Sequence[Mapping[str, Any]],
    accuracy: Mapping[str, Mapping[str, Any]],
    metric: str,
    path: Path,
) -> Path:
    """One panel per batch x sequence shape, one point per backend: p50 latency against the
    backend's `metric`, colour by backend. QtoolError when there is nothing to plot or no
    matplotlib."""
    points = [
        (r, accuracy[r["backend"]]["metrics"][metric])
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
    cols = min(len(shapes), 3)
    rows_n = (len(shapes) + cols - 1) // cols
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        rows_n, cols, figsize=(4 * cols, 3.4 * rows_n), dpi=110, squeeze=False, sharey=True
    )
    try:
        for ax, shape in zip(axes.flat, shapes, strict=False):
            for r, value in points:
                if (r["batch"], r["seq"]) != shape:
                    continue
                i = backends.index(r["backend"])
                ax.scatter(r["p50_ms"], value, s=50, color=colours(i % 10), label=r["backend"])
            ax.set_title(f"batch {shape[0]} x seq {shape[1]}", fontsize=10)
            ax.set_xlim(left=0)
            ax.set_xlabel("p50 latency (ms)")
            ax.grid(True, alpha=0.3)
        for ax in axes[:, 0]:
            ax.set_ylabel(metric)
        for ax in axes.flat[len(shapes) :]:
            ax.set_visible(False)
        handles = [
            plt.Line2D([], [], marker="o", linestyle="", color=colours(i % 10), label=name)
            for i, name in enumerate(backends)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(backends), 5), fontsize=8)
        fig.suptitle(f"{metric} against latency")
        fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(backends) > 5), 1, 1))
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
