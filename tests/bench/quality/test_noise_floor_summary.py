"""The noise floor's per-metric summary leaves out draws a metric could not compute (NaN),
says how many, and drops a metric no draw computed, rather than failing the whole run."""

from __future__ import annotations

import math
import statistics

import pytest

from bench.quality.noise_floor import _summary


def test_non_finite_draws_are_left_out_and_counted():
    s = _summary([1.0, math.nan, 3.0, math.inf, 2.0])
    assert s["mean"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(statistics.stdev([1.0, 3.0, 2.0]))
    assert (s["min"], s["max"], s["values"]) == (1.0, 3.0, [1.0, 3.0, 2.0])
    assert s["non_finite_draws"] == 2


def test_a_metric_no_draw_computed_has_no_summary():
    assert _summary([math.nan, math.nan]) is None
    assert "non_finite_draws" not in _summary([0.5, 0.25])
    assert _summary([0.5])["std"] == 0.0
