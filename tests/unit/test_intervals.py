import numpy as np
import pytest

from qtoolkit.bench.machine import machine_info
from qtoolkit.tasks.intervals import agreement_interval, paired_bootstrap, speedup_interval


def test_identical_models_tie_at_zero():
    a = [1, 0, 1, 1, 0, 1] * 50
    iv = paired_bootstrap(a, a)
    assert (iv.value, iv.low, iv.high) == (0.0, 0.0, 0.0)
    assert iv.is_tie


def test_clear_difference_is_not_a_tie_and_interval_brackets_the_mean():
    rng = np.random.default_rng(1)
    b = rng.integers(0, 2, 2000)
    a = b.copy()
    a[rng.choice(2000, 200, replace=False)] = 1  # a is right wherever b was, and on 200 more
    iv = paired_bootstrap(a, b)
    assert iv.value == pytest.approx((a - b).mean())
    assert 0 < iv.low < iv.value < iv.high
    assert not iv.is_tie
    # Normal approximation of the same interval, as an independent check of its width.
    se = (a - b).std(ddof=1) / np.sqrt(len(a))
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_small_noisy_difference_is_a_tie():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2, 300)
    b = a.copy()
    flip = rng.choice(300, 6, replace=False)
    b[flip] = 1 - b[flip]
    assert paired_bootstrap(a, b).is_tie


def test_agreement_interval():
    iv = agreement_interval([0, 1, 1, 0] * 100, [0, 1, 0, 0] * 100)
    assert iv.value == pytest.approx(0.75)
    assert iv.low < 0.75 < iv.high
    with pytest.raises(ValueError):
        agreement_interval([1], [1, 2])


def test_points_format():
    assert paired_bootstrap([1, 1, 0, 0], [1, 1, 0, 0]).points() == "+0.00 [+0.00, +0.00]"


def test_machine_info_names_the_cpu():
    info = machine_info(threads=2)
    assert info["cpu"] and info["cores"] >= 1 and info["threads"] == 2
    assert info["versions"]["torch"]


def test_speedup_interval_pairs_rounds():
    rng = np.random.default_rng(3)
    # Each round slowed by a shared factor (other work on the machine), fast side 1.5x faster.
    load = rng.uniform(1.0, 1.6, 40)
    slow = 0.30 * load * rng.normal(1.0, 0.01, 40)
    fast = 0.20 * load * rng.normal(1.0, 0.01, 40)
    iv = speedup_interval(slow, fast)
    assert iv.value == pytest.approx(np.median(slow) / np.median(fast))
    assert iv.low < iv.value < iv.high
    assert iv.low > 1.0 and iv.high < 1.7
    same = speedup_interval(slow, slow * rng.normal(1.0, 0.05, 40))
    assert same.low <= 1.0 <= same.high  # a tie
    with pytest.raises(ValueError):
        speedup_interval([0.1, 0.2], [0.1])
    with pytest.raises(ValueError):
        speedup_interval([0.1], [0.0])
