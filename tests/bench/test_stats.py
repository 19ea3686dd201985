"""Statistics against values computed by hand."""

import math

import numpy as np
import pytest

from bench.core import stats


def test_summary_hand_computed():
    s = stats.summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s.n == 5
    assert s.median == 3.0
    # numpy's default (linear) quartiles of 1..5: positions 1 and 3 -> 2 and 4
    assert (s.q1, s.q3, s.iqr) == (2.0, 4.0, 2.0)
    assert s.mean == 3.0
    assert math.isclose(s.stdev, math.sqrt(2.5))
    assert (s.min, s.max) == (1.0, 5.0)


def test_median_ci_small_sample_uses_extremes():
    # n=5: the only interval is (x_(1), x_(5)), coverage 1 - 2/32
    low, high, cov = stats.median_ci([3, 1, 2, 5, 4])
    assert (low, high) == (1.0, 5.0)
    assert math.isclose(cov, 1 - 2 / 32)


def test_median_ci_n20_hand_computed():
    # n=20, P(B<=5)=0.0207 -> j=6 gives coverage 1-2*0.0207=0.9586>=0.95,
    # j=7: P(B<=6)=0.0577 -> 0.885 < 0.95. So the interval is (x_(6), x_(15)).
    x = list(range(1, 21))
    low, high, cov = stats.median_ci(x)
    assert (low, high) == (6.0, 15.0)
    assert math.isclose(cov, 1 - 2 * sum(math.comb(20, k) for k in range(6)) / 2**20)
    assert cov >= 0.95


def test_median_ci_single_and_empty():
    assert stats.median_ci([7.0])[:2] == (7.0, 7.0)
    with pytest.raises(ValueError):
        stats.summarize([])


def test_speedup_ratio_and_interval():
    base = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.05, 9.95]
    fast = [5.0, 5.1, 4.9, 5.05, 4.95, 5.0, 5.02, 4.98]
    sp = stats.speedup(base, fast)
    assert math.isclose(sp.ratio, 10.0 / 5.0)
    assert sp.ci_low <= sp.ratio <= sp.ci_high
    assert 1.9 < sp.ci_low and sp.ci_high < 2.1
    assert sp.significant and sp.p_value < 0.01
    assert stats.speedup(base, fast) == sp  # seeded: reproducible


def test_speedup_same_distribution_not_significant():
    rng = np.random.default_rng(1)
    a = rng.normal(10, 0.5, 30)
    b = rng.normal(10, 0.5, 30)
    sp = stats.speedup(a, b)
    assert not sp.significant
    assert sp.ci_low < 1.0 < sp.ci_high


def test_mann_whitney_matches_scipy_and_handles_ties():
    from scipy.stats import mannwhitneyu

    a, b = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    assert stats.mann_whitney_p(a, b) == pytest.approx(mannwhitneyu(a, b).pvalue)
    assert stats.mann_whitney_p([2, 2, 2], [2, 2]) == 1.0
