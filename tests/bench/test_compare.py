"""The comparison engine shared by the engine, the gate and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.core import compare, stats
from bench.core.compare import Samples


def _lat(median, n=12, spread=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return list(median * (1 + spread * rng.standard_normal(n)))


def test_match_key_is_model_strategy_and_batch():
    assert compare.match_key("m", "s", {"batch_size": 2}, "x") == "m | s | b=2"
    assert compare.match_key(None, "s", {}, "fallback") == "fallback"


def test_paired_speedup_against_an_independent_computation():
    drift = np.exp(np.linspace(0, 1, 12))
    a = np.array(_lat(0.2, seed=1)) * drift
    b = np.array(_lat(0.1, seed=2)) * drift
    rounds = list(range(12))
    sp = compare.speedup(Samples(list(a), 2, rounds, "run"), Samples(list(b), 2, rounds, "run"))
    logs = np.log(a / b)
    assert sp.method == stats.PAIRED and sp.n == 12
    assert sp.ratio == pytest.approx(math.exp(np.median(logs)))
    assert sp.p_value == pytest.approx(sps.wilcoxon(logs).pvalue)
    # Order-statistic interval of the median: ranks j and n-j+1 with j = 3 at n = 12 (exact
    # binomial coverage 1 - 2 P(B <= 2) = 0.9807 >= 0.95, while j = 4 gives 0.927).
    ordered = np.sort(logs)
    assert sp.ci_low == pytest.approx(math.exp(ordered[2]))
    assert sp.ci_high == pytest.approx(math.exp(ordered[9]))


def test_independent_when_not_one_run_and_intervals_without_samples():
    a, b = _lat(0.2, seed=1), _lat(0.1, seed=2)
    sp = compare.speedup(Samples(a, 1, list(range(12)), "x"), Samples(b, 1, list(range(12)), "y"))
    assert sp.method == stats.INDEPENDENT
    assert sp.ratio == pytest.approx(np.median(a) / np.median(b))
    assert sp.p_value == pytest.approx(sps.mannwhitneyu(a, b).pvalue)
    no_raw = compare.speedup(Samples(None, 1, median_ms=200, ci_low_ms=190, ci_high_ms=210),
                             Samples(None, 1, median_ms=100, ci_low_ms=95, ci_high_ms=105))
    assert no_raw.method == compare.INTERVALS and no_raw.significant
    assert no_raw.ratio == pytest.approx(2.0) and no_raw.ci_low == pytest.approx(190 / 105)


def test_per_image_comparison_across_batch_sizes():
    a, b = _lat(0.2, seed=1), _lat(0.4, seed=1)  # the same per-image cost at batch 1 and 2
    change = compare.latency_change(Samples(a, 1), Samples(b, 2))
    assert change.ratio == pytest.approx(1.0) and change.direction is None


def test_latency_change_direction():
    base = Samples(_lat(0.1, seed=1), 1)
    assert compare.latency_change(base, Samples(_lat(0.12, seed=2), 1)).direction == "slower"
    assert compare.latency_change(base, Samples(_lat(0.08, seed=2), 1)).direction == "faster"
    same = compare.latency_change(base, Samples(_lat(0.1, seed=2), 1))
    assert same.direction is None and not same.significant
    assert compare.latency_change(Samples(None), base) is None
