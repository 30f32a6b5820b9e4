"""The accuracy/latency plot: an interval on every accuracy point, agreement shown, and an axis
that does not make a tie look like a cliff."""

from __future__ import annotations

import pytest

from qtoolkit.bench.plot import MIN_SPAN_POINTS, _Point, accuracy_axis, plot_accuracy_latency
from qtoolkit.errors import QtoolError


def _iv(value: float, half: float) -> dict:
    return {"value": value, "low": value - half, "high": value + half, "level": 0.95}


def _results(with_intervals: bool = True):
    rows = [
        {"backend": b, "batch": 1, "seq": 128, "p50_ms": ms}
        for b, ms in (("torch-fp32", 26.5), ("ort-int8", 15.4))
    ]
    accuracy = {
        "torch-fp32": {"metrics": {"accuracy": 0.849}, "agreement_with": "torch-fp32"},
        "ort-int8": {
            "metrics": {"accuracy": 0.844},
            "agreement_with": "torch-fp32",
            "agreement_interval": _iv(0.971, 0.01),
            "delta": {"value": -0.005, "low": -0.015, "high": 0.006},
        },
    }
    if with_intervals:
        accuracy["torch-fp32"]["metric_interval"] = _iv(0.849, 0.022)
        accuracy["ort-int8"]["metric_interval"] = _iv(0.844, 0.022)
    return rows, accuracy


def test_a_half_point_tie_does_not_fill_the_axis():
    # The old plot spanned 84.4-84.9: the tie looked like a cliff.
    lo, hi = accuracy_axis([_Point(84.4, None, None), _Point(84.9, None, None)], percent=True)
    assert hi - lo >= MIN_SPAN_POINTS and lo < 84.4 and hi > 84.9


def test_the_axis_holds_every_interval_and_stays_within_100_percent():
    lo, hi = accuracy_axis([_Point(84.4, 82.2, 86.6), _Point(84.9, 82.7, 87.1)], percent=True)
    assert lo < 82.2 and hi > 87.1
    lo, hi = accuracy_axis([_Point(99.5, 99.0, 100.0)], percent=True)
    assert hi == 100.0 and hi - lo >= MIN_SPAN_POINTS


def _drawn(monkeypatch, rows, accuracy, tmp_path):
    """The figure the plot saves, kept open for inspection."""
    from matplotlib.figure import Figure

    saved = {}
    real = Figure.savefig

    def keep(fig, path, *args, **kwargs):
        saved["fig"] = fig
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    path = plot_accuracy_latency(rows, accuracy, "accuracy", tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return saved["fig"]


def test_every_accuracy_point_has_its_interval_and_agreement_is_shown(monkeypatch, tmp_path):
    from matplotlib.container import ErrorbarContainer

    fig = _drawn(monkeypatch, *_results(), tmp_path)
    panel, agreement = fig.axes
    bars = [c for c in panel.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and all(c.has_yerr for c in bars)
    lo, hi = panel.get_ylim()
    assert lo < 82.2 and hi > 87.1  # both intervals in view, in percent
    texts = [t.get_text() for t in panel.texts]
    assert texts == ["-0.5 pts, tie"]  # the INT8 point, against the dashed fp32 reference
    assert [t.get_text() for t in agreement.get_yticklabels()] == ["ort-int8"]
    assert [t.get_text() for t in agreement.texts] == ["97.1% [96.1, 98.1]"]
    assert "agreement with torch-fp32" in agreement.get_xlabel()


def test_results_without_intervals_say_so(monkeypatch, tmp_path):
    from matplotlib.container import ErrorbarContainer

    fig = _drawn(monkeypatch, *_results(with_intervals=False), tmp_path)
    panel = fig.axes[0]
    bars = [c for c in panel.containers if isinstance(c, ErrorbarContainer)]
    assert bars and not any(c.has_yerr for c in bars)
    assert "no accuracy interval" in fig._suptitle.get_text()


def test_nothing_to_plot_is_one_error(tmp_path):
    with pytest.raises(QtoolError, match="nothing|no backend"):
        plot_accuracy_latency([], {}, "accuracy", tmp_path / "p.png")
