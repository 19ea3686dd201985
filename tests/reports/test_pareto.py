"""Pareto frontiers on hand-built cases, and against a brute-force reference."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from bench.core import pareto as core
from reports.pareto import dominates, pareto_front, pareto_front_2d, pareto_mask


def _reference_front(points, higher_is_better):
    """Textbook definition, written independently: i is on the frontier unless some j is
    no worse everywhere and strictly better somewhere; NaN points are never on it."""
    out = []
    for i, p in enumerate(points):
        if any(math.isnan(v) for v in p):
            continue
        dominated = False
        for j, q in enumerate(points):
            if i == j or any(math.isnan(v) for v in q):
                continue
            no_worse = all((qv >= pv) if hib else (qv <= pv) for pv, qv, hib in zip(p, q, higher_is_better, strict=True))
            better = any((qv > pv) if hib else (qv < pv) for pv, qv, hib in zip(p, q, higher_is_better, strict=True))
            if no_worse and better:
                dominated = True
                break
        if not dominated:
            out.append(i)
    return out


def test_single_point_is_the_frontier():
    assert pareto_front([[3.0, 1.0]], [False, True]) == [0]
    assert pareto_front_2d([12.5], [0.3]) == [0]
    assert pareto_mask([[1.0]], [True]).tolist() == [True]


def test_empty():
    assert pareto_front(np.zeros((0, 2)), [False, True]) == []
    assert pareto_front_2d([], []) == []


def test_identical_points_are_both_on_the_frontier():
    pts = [[10.0, 0.9], [10.0, 0.9], [20.0, 0.5]]
    assert pareto_front(pts, [False, True]) == [0, 1]


def test_tie_on_one_objective_is_dominated_by_the_better_other():
    # same latency, lower quality: dominated; same quality, slower: dominated
    pts = [[10.0, 0.9], [10.0, 0.8], [12.0, 0.9]]
    assert pareto_front(pts, [False, True]) == [0]


def test_direction_of_the_quality_metric_changes_the_frontier():
    # A is slower with quality 1, B faster with quality 2.
    latency, quality = [10.0, 5.0], [1.0, 2.0]
    # higher quality is better (e.g. PSNR): B is faster and better, so it dominates A
    assert pareto_front_2d(latency, quality, y_higher_is_better=True) == [1]
    # lower is better (e.g. FID): a real trade-off, both on the frontier, fastest first
    assert pareto_front_2d(latency, quality, y_higher_is_better=False) == [1, 0]


def test_both_directions_on_both_axes():
    pts = [[1.0, 1.0], [2.0, 2.0]]
    assert pareto_front(pts, [True, True]) == [1]
    assert pareto_front(pts, [False, False]) == [0]
    assert sorted(pareto_front(pts, [True, False])) == [0, 1]
    assert sorted(pareto_front(pts, [False, True])) == [0, 1]


def test_nan_is_never_on_the_frontier_and_dominates_nothing():
    pts = [[1.0, float("nan")], [5.0, 0.5]]
    assert pareto_front(pts, [False, True]) == [1]
    assert not dominates([1.0, float("nan")], [5.0, 0.5], [False, True])


def test_infinite_quality_beats_finite():
    # the baseline against itself: PSNR = inf
    pts = [[50.0, math.inf], [20.0, 35.0], [30.0, 30.0]]
    assert pareto_front_2d([p[0] for p in pts], [p[1] for p in pts]) == [1, 0]
    assert dominates([50.0, math.inf], [60.0, 40.0], [False, True])


def test_frontier_is_ordered_for_a_staircase():
    x = [40.0, 10.0, 20.0, 30.0]
    y = [0.95, 0.5, 0.7, 0.9]
    assert pareto_front_2d(x, y) == [1, 2, 3, 0]


def test_dominates_is_strict():
    assert dominates([1, 2], [1, 1], [True, True])
    assert not dominates([1, 1], [1, 1], [True, True])
    assert not dominates([1, 0], [0, 1], [True, True])


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 2
    pts = rng.integers(0, 6, size=(40, k)).astype(float)  # small range: many ties
    pts[rng.random(40) < 0.05, 0] = np.nan
    for dirs in itertools.product([True, False], repeat=k):
        got = sorted(pareto_front(pts, dirs))
        assert got == _reference_front(pts.tolist(), dirs), dirs


def test_bad_shapes_fail_clearly():
    with pytest.raises(ValueError, match="direction"):
        pareto_front([[1.0, 2.0]], [True])
    with pytest.raises(ValueError, match="x has"):
        pareto_front_2d([1.0, 2.0], [1.0])


def test_the_front_is_computed_in_one_place():
    """The report's frontiers and the search's front share ``bench.core.pareto``, torch-free."""
    assert pareto_mask is core.pareto_mask and pareto_front is core.pareto_front
    assert dominates is core.dominates
    code = "import sys, bench.core.pareto; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
