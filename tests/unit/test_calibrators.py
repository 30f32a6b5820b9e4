"""Each calibration rule against an independent numpy computation on a known tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtoolkit.quant.calib import HistogramCalibrator
from qtoolkit.quant.insert import iter_quantizers


@pytest.fixture(scope="module")
def known() -> np.ndarray:
    """Heavy-tailed activations: mostly Gaussian with a few large outliers, like BERT's."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.0, 200_000)
    x[:200] = rng.normal(0, 12.0, 200)
    return x.astype(np.float32)


def _calibrator(x: np.ndarray, num_bins=2048) -> HistogramCalibrator:
    cal = HistogramCalibrator(num_bins=num_bins)
    cal.collect(torch.from_numpy(x))
    return cal


def _fake_quant_mse(x: np.ndarray, amax: float, levels: int = 127) -> float:
    scale = amax / levels
    q = np.clip(np.round(x / scale), -levels - 1, levels) * scale
    return float(np.mean((q - x) ** 2))


def test_max_is_the_absolute_maximum(known):
    from pytorch_quantization.nn import TensorQuantizer
    from pytorch_quantization.tensor_quant import QuantDescriptor

    from qtoolkit.quant.calibrate import collect_statistics, load_amax
    from qtoolkit.recipe import CalibConfig

    q = TensorQuantizer(QuantDescriptor(num_bits=8))
    holder = torch.nn.Sequential(q)
    halves = np.array_split(known, 2)
    collect_statistics(
        holder, lambda m: [m(torch.from_numpy(h)) for h in halves], CalibConfig(method="max")
    )
    load_amax(holder, CalibConfig(method="max"))
    assert float(q.amax) == pytest.approx(float(np.abs(known).max()), rel=0, abs=0)


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_one_bin(known, p):
    cal = _calibrator(known)
    amax = float(cal.compute_amax("percentile", percentile=p))
    bin_width = cal.range / cal.num_bins
    want = float(np.percentile(np.abs(known), p))
    assert want <= amax + 1e-6
    assert amax - want <= bin_width + 1e-6


def test_mse_matches_brute_force_search_on_raw_values(known):
    cal = _calibrator(known)
    amax = float(cal.compute_amax("mse"))
    # Independent: evaluate the true quantization MSE of the raw tensor on a fine grid.
    grid = np.linspace(np.abs(known).max() / 32, np.abs(known).max(), 400)
    mses = np.array([_fake_quant_mse(known, a) for a in grid])
    best = grid[int(np.argmin(mses))]
    assert _fake_quant_mse(known, amax) <= mses.min() * 1.01
    assert amax == pytest.approx(best, rel=0.05)
    assert amax < np.abs(known).max()  # it clips the outliers


def _reference_entropy(x: np.ndarray, num_bins=2048, start_bin=128, num_levels=128) -> float:
    """TensorRT's KL-divergence calibration, written plainly with loops (slow, obviously right)."""
    hist, edges = np.histogram(np.abs(x), bins=num_bins, range=(0, np.abs(x).max()))
    hist = hist.astype(np.float64)
    hist[0] = hist[1]
    best_kl, best_i = np.inf, num_bins
    for i in range(start_bin, num_bins + 1):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        q = np.zeros(i)
        for level in range(num_levels):
            lo, hi = level * i // num_levels, (level + 1) * i // num_levels
            chunk = hist[lo:hi]
            nonzero = np.count_nonzero(chunk)
            if nonzero:
                q[lo:hi] = np.where(chunk != 0, chunk.sum() / nonzero, 0.0)
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        if np.any(q[mask] == 0):
            continue
        kl = np.sum(p[mask] * np.log(p[mask] / q[mask]))
        if kl <= best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def test_entropy_matches_reference_implementation(known):
    sample = known[::4]  # the reference is slow
    cal = _calibrator(sample)
    got = float(cal.compute_amax("entropy"))
    want = _reference_entropy(sample)
    bin_width = cal.range / cal.num_bins
    assert abs(got - want) <= bin_width * 1.01
    assert got < np.abs(sample).max()


def test_histogram_growth_is_exact():
    cal = HistogramCalibrator(num_bins=16)
    cal.collect(torch.tensor([0.1, 0.2, 1.0]))
    cal.collect(torch.tensor([3.5, 0.05]))  # range 1 -> 2 -> 4: two exact merges
    counts, _ = cal.histogram()
    assert cal.range == 4.0
    want = np.zeros(16)
    want[0] = 3  # 0.05, 0.1, 0.2 in [0, 0.25)
    want[4] = 1  # 1.0, the first range's top edge, moved to [1.0, 1.25) when the range grew
    want[14] = 1  # 3.5 in [3.5, 3.75)
    np.testing.assert_array_equal(counts, want)


def test_histogram_does_not_depend_on_order_or_growth():
    """From one starting range, any order of the same values gives the histogram a single histc
    over the final range gives: what lets ranks' histograms be summed (qtoolkit.dist)."""
    torch.manual_seed(0)
    sizes, scales = [40, 7, 300, 1, 90], [1, 3, 0.5, 9, 20]
    chunks = [torch.randn(n) * s for n, s in zip(sizes, scales, strict=True)]
    first_max = float(chunks[0].abs().max())
    chunks.insert(3, torch.full((3,), first_max))  # values exactly at the starting range
    forward = HistogramCalibrator(num_bins=64)
    for c in chunks:
        forward.collect(c)
    backward = HistogramCalibrator(num_bins=64)
    backward.start(first_max)
    for c in reversed(chunks):
        backward.collect(c)
    backward.grow_to(forward.range)
    direct = torch.histc(torch.cat(chunks).abs(), bins=64, min=0, max=forward.range)
    np.testing.assert_array_equal(forward.histogram()[0], direct.double().numpy())
    np.testing.assert_array_equal(backward.histogram()[0], direct.double().numpy())
    with pytest.raises(ValueError, match="power of 2"):
        backward.grow_to(forward.range * 3)


def test_mse_runs_on_cpu_only_machine(tiny_bert_dir, sample_batch):
    """pytorch-quantization's own mse path calls .cuda(); ours must not."""
    from qtoolkit.models import load_model
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig

    model = load_model(ModelConfig(path=str(tiny_bert_dir))).model
    insert_quantizers(model, QuantConfig())
    for method in ("mse", "entropy", "percentile"):
        result = calibrate(model, lambda m: m(**sample_batch), CalibConfig(method=method, stride=8))
        assert not result.unused
        assert all(hasattr(q, "_amax") for _, q in iter_quantizers(model))


def test_a_new_calibrator_is_one_registry_entry(monkeypatch, tiny_bert_dir, sample_batch):
    """Registering a method is all it takes: the recipe accepts it and calibration uses it."""
    from qtoolkit.models import load_model
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.quant.calib import registry
    from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig

    def half_range(counts, edges, cfg, num_bits, unsigned) -> float:
        return float(edges[-1]) / 2  # a deliberately odd rule whose result is easy to predict

    entry = registry.Calibrator("half-range", "histogram", "half the histogram's range", half_range)
    monkeypatch.setitem(registry.CALIBRATORS, entry.name, entry)
    monkeypatch.setattr(registry, "CALIB_METHODS", (*registry.CALIB_METHODS, entry.name))

    model = load_model(ModelConfig(path=str(tiny_bert_dir))).model
    insert_quantizers(model, QuantConfig())
    calibrate(model, lambda m: m(**sample_batch), CalibConfig(method="half-range"))
    got = {n: float(q.amax) for n, q in iter_quantizers(model) if n.endswith("_input_quantizer")}
    model = load_model(ModelConfig(path=str(tiny_bert_dir))).model
    insert_quantizers(model, QuantConfig())
    calibrate(model, lambda m: m(**sample_batch), CalibConfig(method="max"))
    ref = {n: float(q.amax) for n, q in iter_quantizers(model) if n.endswith("_input_quantizer")}
    assert got and got.keys() == ref.keys()
    for name, amax in got.items():
        # The histogram's range is the first batch's range doubled until it holds the absolute
        # maximum, so it lies in [max, 2 max) and half of it in [max / 2, max): never the max.
        assert ref[name] / 2 * (1 - 1e-6) <= amax < ref[name], name
    with pytest.raises(ValueError, match="unknown method"):
        CalibConfig(method="no-such-method")


def test_one_histogram_pass_serves_max_exactly(tiny_bert_dir, sample_batch):
    """`calibrations` collects histograms once for [entropy, max]: the max it loads from them is
    bit for bit what a pass with pytorch-quantization's MaxCalibrator gives."""
    from qtoolkit.models import load_model
    from qtoolkit.quant import calibrate, insert_quantizers
    from qtoolkit.quant.candidates import calibrations
    from qtoolkit.recipe import CalibConfig, ModelConfig, QuantConfig

    passes = []

    def loop(m):
        passes.append(1)
        m(**sample_batch)

    def amaxes(model):
        return {n: q.amax.clone() for n, q in iter_quantizers(model) if hasattr(q, "_amax")}

    def fresh():
        model = load_model(ModelConfig(path=str(tiny_bert_dir))).model
        insert_quantizers(model, QuantConfig())
        return model.eval()

    shared = fresh()
    got = {}
    for method in calibrations(shared, loop, CalibConfig(), ["entropy", "max"]):
        got[method] = amaxes(shared)
    assert len(passes) == 1 and list(got) == ["entropy", "max"]
    for method in ("entropy", "max"):
        alone = fresh()
        calibrate(alone, lambda m: m(**sample_batch), CalibConfig(method=method))
        ref = amaxes(alone)
        assert ref.keys() == got[method].keys()
        for name, amax in ref.items():
            assert torch.equal(got[method][name], amax), (method, name)
