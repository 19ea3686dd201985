"""The statistics against simulation: intervals cover at their stated level, A/A comparisons
raise few false alarms, the probe corrects the machine's drift between runs, and
Benjamini-Hochberg holds the false discovery rate of a matrix. Pure numpy, each under a second."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core import compare, stats
from bench.gate import Entry, Rules, compare_latency


def _ranks(n: int) -> tuple[int, float]:
    """The order-statistic rank j and coverage median_ci uses for n samples."""
    low, _, level = stats.median_ci(np.arange(n, dtype=float))
    return int(low) + 1, level


def _noise(rng, kind: str, size) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0, 0.05, size)
    return 0.03 * rng.standard_t(2, size)  # heavy tails: the odd call 10x off


@pytest.mark.parametrize("kind", ["normal", "heavy"])
@pytest.mark.parametrize("n", [6, 10, 20])
def test_paired_intervals_cover_at_their_stated_level(n, kind):
    rng = np.random.default_rng(n)
    true = np.log(1.3)
    x = np.sort(true + _noise(rng, kind, (4000, n)), axis=1)
    j, level = _ranks(n)
    covered = (x[:, j - 1] <= true) & (true <= x[:, n - j])
    assert abs(covered.mean() - level) <= 0.02, (covered.mean(), level)
    assert level >= 0.95
    # The library's estimator is exactly this interval, and its verdict agrees with its test.
    for row in x[:50]:
        sp = stats.paired_speedup(row)
        assert sp.ci_level == pytest.approx(level)
        assert np.log(sp.ci_low) == pytest.approx(row[j - 1]) and np.log(sp.ci_high) == pytest.approx(row[n - j])
        assert sp.significant == (sp.p_value <= 0.05) == (sp.ci_low > 1 or sp.ci_high < 1)


def test_fewer_than_six_rounds_never_give_a_verdict():
    sp = stats.paired_speedup(np.log([1.5, 1.6, 1.4, 1.55, 1.5]))
    assert sp.ci_level < 0.95 and not sp.significant and sp.verdict == "inconclusive"


@pytest.mark.parametrize("n", [6, 10, 20])
def test_the_paired_verdict_rarely_calls_an_a_a_comparison_different(n):
    rng = np.random.default_rng(100 + n)
    drift = rng.uniform(0.7, 1.3, (1000, n, 1))  # the machine's speed per round: cancels
    times = 0.4 * drift * np.exp(rng.normal(0, 0.05, (1000, n, 2)))
    logs = np.sort(np.log(times[..., 0] / times[..., 1]), axis=1)
    j, _ = _ranks(n)
    alarms = (logs[:, j - 1] > 0) | (logs[:, n - j] < 0)
    assert alarms.mean() <= 0.05


def _entry(run: str, latencies, probe, rounds=None) -> Entry:
    return Entry.from_latencies("m | baseline | b=1", latencies, run_id=run, probe_s=list(probe),
                                rounds=rounds)


def _runs(rng, speed_a, speed_b, code=1.0, n=10):
    """Two separate runs on a machine whose speed changed between them (and, with ``code``,
    a slower code in the second)."""
    a = 0.4 * speed_a * np.exp(rng.normal(0, 0.04, n))
    b = 0.4 * speed_b * code * np.exp(rng.normal(0, 0.04, n))
    pa = 0.005 * speed_a * np.exp(rng.normal(0, 0.04, n))
    pb = 0.005 * speed_b * np.exp(rng.normal(0, 0.04, n))
    return _entry("A", a, pa), _entry("B", b, pb)


def test_the_gate_reads_separate_runs_through_the_machine_probe():
    rng = np.random.default_rng(7)
    rules = Rules(max_slowdown=0.10)
    # The machine 30% slower during the second run, the code unchanged: not a regression.
    base, cur = _runs(rng, 1.0, 1.3)
    check = compare_latency(base, cur, rules)
    assert check.outcome == "pass" and "slower during the current run (its probe)" in check.reason
    assert check.test == "probe-corrected"
    # The same machine drift and a code 30% slower: caught.
    base, cur = _runs(rng, 1.0, 1.3, code=1.3)
    assert compare_latency(base, cur, rules).outcome == "regression"
    # A/A over 300 simulated pairs of runs whose machine speed moves by up to +-30%.
    alarms = 0
    for _ in range(300):
        base, cur = _runs(rng, *rng.uniform(0.7, 1.3, 2))
        alarms += compare_latency(base, cur, rules).outcome == "regression"
    assert alarms / 300 <= 0.05


def test_the_report_comparison_of_separate_runs_rarely_calls_a_a_different():
    rng = np.random.default_rng(11)
    alarms = 0
    for _ in range(200):
        base, cur = _runs(rng, *rng.uniform(0.7, 1.3, 2))
        change = compare.latency_change(base.samples(), cur.samples())
        alarms += change.verdict in ("faster", "slower")
    assert alarms / 200 <= 0.05


def test_benjamini_hochberg_holds_the_false_discovery_rate_of_a_matrix():
    rng = np.random.default_rng(3)
    fdp = []
    for _ in range(300):
        true = rng.random(100) < 0.3  # 30 cells with a real effect
        z = rng.normal(0, 1, 100) + np.where(true, 3.0, 0.0)
        from scipy.stats import norm

        p = 2 * norm.sf(np.abs(z))
        found = np.asarray(stats.benjamini_hochberg(p, 0.05))
        fdp.append((found & ~true).sum() / max(found.sum(), 1))
    assert np.mean(fdp) <= 0.05


def test_four_words():
    assert stats.verdict(1.2, 1.5, True) == "faster"
    assert stats.verdict(0.6, 0.8, True) == "slower"
    assert stats.verdict(0.97, 1.03, False) == "equivalent"
    assert stats.verdict(0.9, 1.3, False) == "inconclusive"
    assert stats.verdict(1.2, 1.5, False) == "inconclusive"  # the test must agree
