"""Change points of a history series, found with each point's interval.

Detection is PELT (Killick et al. 2012, the exact penalised segmentation) from the
``ruptures`` library, on a weighted least-squares cost: each point weighs ``1 / noise_i**2``,
where ``noise_i`` is its own interval's standard error (``(high - low) / (2 * 1.96)``) scaled
up to the series' observed point-to-point scatter when that is larger (a robust estimate
from successive differences, which a step barely moves). The cost is then
in units of the noise, so one penalty, ``beta * log(n)``, fits every metric and unit. Series
whose values (and interval ends) are all positive are segmented in log space, where a
constant coefficient of variation is a constant noise and a step is a ratio.

E-Divisive means (MongoDB's ``signal-processing-algorithms``, which Apache Otava uses) was
the first choice; its current release pins ``numpy<2`` and pulls in gevent, which the
project's numpy 2 cannot take, so PELT from ``ruptures`` is used instead.

The size of each change is the ratio of the means of the segments after and before it, with
a Welch t interval on the log ratio (delta method).

Measured with the tuning below (``beta=3.0``, ``min_size=2``) by the seeded simulation in
``tests/bench/history/test_changepoints.py`` (``pytest -s`` prints it): series of 60 points
at a coefficient of variation of 5%, one step (up or down) at a random place in 15..45, each
point with the 95% interval of its own noise. Found: a change point within two commits of
the true place; false: every other change point, per 100 points.

=========  ===============================  ==================================
step       found (200 series, slow test)    false per 100 points (200 / 20)
=========  ===============================  ==================================
5%         61/200 (30%)                     0.44 / 0.25
10%        184/200 (92%)                    0.14 / 0.17
20%        200/200 (100%)                   0.02 / 0.00
none       -                                0.00 / 0.00
=========  ===============================  ==================================

The fast test (20 series per size) finds 6/20, 18/20 and 20/20. Most "false" change points
of the 5% series are real steps found more than two commits away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: The penalty is ``BETA * log(n)`` in units of the noise variance.
BETA = 3.0
#: The shortest segment PELT may create.
MIN_SIZE = 2
#: The interval ends are read as a 95% interval of a normal mean.
Z95 = 1.959964


def _diff_scale(d: np.ndarray) -> float:
    """Standard deviation of ``d``, robust to a few outliers (the steps among differences).

    A MAD estimate first, then the plain root mean square of the differences within 3.5 of
    those deviations of the median: nearly the efficiency of the standard deviation on
    normal noise, which MAD alone (37%) lacks on short series.
    """
    if len(d) < 2:
        return float(np.abs(d).max()) if len(d) else 0.0
    centre = float(np.median(d))
    mad = 1.4826 * float(np.median(np.abs(d - centre)))
    kept = d[np.abs(d - centre) <= 3.5 * mad] if mad > 0 else d
    return float(np.sqrt(np.mean((kept - centre) ** 2)))


def noise(values: np.ndarray, lows: np.ndarray | None = None,
          highs: np.ndarray | None = None) -> np.ndarray:
    """Each point's noise (a standard deviation, in the units of ``values``).

    From each point's interval where it has one, scaled up to the series' observed scatter
    (robust, from successive differences) where the intervals understate it; a point without
    an interval gets the series' typical interval noise, or the observed scatter alone.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    s = np.full(n, np.nan)
    if lows is not None and highs is not None:
        lo, hi = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
        width = hi - lo
        ok = np.isfinite(width) & (width > 0)
        s[ok] = width[ok] / (2 * Z95)
    have = np.isfinite(s)
    if have.any():
        s[~have] = float(np.median(s[have]))
        if n > 2:  # standardised successive differences: ~N(0, 1) if the intervals are right
            k = _diff_scale(np.diff(x) / np.sqrt(s[1:] ** 2 + s[:-1] ** 2))
            s = s * max(k, 1.0)
    else:
        s[:] = _diff_scale(np.diff(x)) / math.sqrt(2.0)
    floor = 1e-9 * float(np.max(np.abs(x))) if n else 0.0
    return np.maximum(s, max(floor, 1e-12))


def _cost_class():
    """A weighted L2 cost for ruptures (built lazily: ruptures loads on first use)."""
    from ruptures.base import BaseCost
    from ruptures.exceptions import NotEnoughPoints

    class WeightedL2(BaseCost):
        """Sum of ``w_i * (x_i - weighted segment mean)**2`` in O(1) from cumulative sums."""

        model = "weighted_l2"

        def __init__(self, weights: np.ndarray | None = None, min_size: int = MIN_SIZE):
            self.weights = weights
            self.min_size = min_size

        def fit(self, signal: np.ndarray) -> WeightedL2:
            self.signal = np.asarray(signal, dtype=float).reshape(len(signal), -1)
            x = self.signal[:, 0]
            w = np.ones_like(x) if self.weights is None else np.asarray(self.weights, float)
            x = x - np.average(x, weights=w)
            self._w = np.concatenate([[0.0], np.cumsum(w)])
            self._wx = np.concatenate([[0.0], np.cumsum(w * x)])
            self._wxx = np.concatenate([[0.0], np.cumsum(w * x * x)])
            return self

        def error(self, start: int, end: int) -> float:
            if end - start < self.min_size:
                raise NotEnoughPoints
            sw = self._w[end] - self._w[start]
            swx = self._wx[end] - self._wx[start]
            return float(self._wxx[end] - self._wxx[start] - swx * swx / sw)

    return WeightedL2


def _log_space(values: np.ndarray, lows: np.ndarray | None,
               highs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Values and interval ends in log space when all are positive, else unchanged."""
    ends = [a[np.isfinite(a)] for a in (lows, highs) if a is not None]
    if len(values) and np.all(values > 0) and all(np.all(e > 0) for e in ends):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.log(values), None if lows is None else np.log(lows),
                    None if highs is None else np.log(highs))
    return values, lows, highs


def detect(values: np.ndarray, lows: np.ndarray | None = None, highs: np.ndarray | None = None,
           *, beta: float = BETA, min_size: int = MIN_SIZE, log: bool | None = None) -> list[int]:
    """The indices where a new segment starts, sorted (never 0).

    ``values`` is one series in commit order; ``lows``/``highs`` its points' interval ends
    (NaN where a point has none). ``beta`` scales the penalty ``beta * log(n)`` (larger: fewer
    change points); ``min_size`` is the shortest segment; ``log`` forces or forbids log space
    (default: whenever every value and interval end is positive).
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    if n < 2 * min_size:
        return []
    lo = None if lows is None else np.asarray(lows, dtype=float)
    hi = None if highs is None else np.asarray(highs, dtype=float)
    if log is None or log:
        lx, llo, lhi = _log_space(x, lo, hi)
        if log and lx is x:
            raise ValueError("log space needs every value and interval end positive")
        x, lo, hi = lx, llo, lhi
    s = noise(x, lo, hi)
    if float(np.ptp(x)) == 0.0:
        return []
    import ruptures as rpt

    cost = _cost_class()(weights=1.0 / s**2, min_size=min_size)
    algo = rpt.Pelt(custom_cost=cost, min_size=min_size, jump=1).fit(x.reshape(-1, 1))
    bkps = algo.predict(pen=beta * math.log(n))
    return sorted(b for b in bkps if 0 < b < n)


def segments(values: Sequence[float] | np.ndarray, change_indices: Sequence[int]) -> list[slice]:
    """The segments between change points: ``[0:c1], [c1:c2], ..., [ck:n]``."""
    n = len(values)
    cuts = [0, *sorted(i for i in change_indices if 0 < i < n), n]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def ratio_interval(before: np.ndarray, after: np.ndarray,
                   level: float = 0.95) -> tuple[float, float, float]:
    """``mean(after) / mean(before)`` and its interval (Welch t on the log ratio, delta method)."""
    from scipy import stats

    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    ma, mb = float(a.mean()), float(b.mean())
    if ma == 0:
        return math.nan, math.nan, math.nan
    r = mb / ma
    if len(a) < 2 or len(b) < 2 or ma <= 0 or mb <= 0:
        return r, math.nan, math.nan
    va = float(a.var(ddof=1)) / (len(a) * ma * ma)
    vb = float(b.var(ddof=1)) / (len(b) * mb * mb)
    se = math.sqrt(va + vb)
    if se == 0:
        return r, r, r
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = float(stats.t.ppf(0.5 + level / 2, df))
    return r, r * math.exp(-t * se), r * math.exp(t * se)


@dataclass
class Change:
    """One change point of one series: where, between which commits, and how big."""

    series: str
    #: Position (within the series, 0-based) of the first point of the new segment.
    index: int
    commit_before: str
    commit_after: str
    #: Means of the segments before and after.
    before: float
    after: float
    #: ``after / before`` and its 95% interval.
    ratio: float
    ratio_low: float
    ratio_high: float
    direction: Literal["better", "worse"]
    metric: str


def series_changes(frame: Any, series: str, **tuning: Any) -> list[Change]:
    """The changes of one series' points (a frame of the columns of :func:`changes`).

    Points whose value is not finite are left out of the detection; indices still count
    every row of ``frame``.
    """
    raw = frame["value"].to_numpy(dtype=float)
    rows = np.flatnonzero(np.isfinite(raw))
    values = raw[rows]
    lows = frame["low"].to_numpy(dtype=float)[rows] if "low" in frame else None
    highs = frame["high"].to_numpy(dtype=float)[rows] if "high" in frame else None
    idx = detect(values, lows, highs, **tuning)
    if not idx:
        return []
    commits = [str(c) for c in frame["commit"]]
    higher = bool(frame["higher_is_better"].iloc[0]) if "higher_is_better" in frame else True
    metric = str(frame["metric"].iloc[0]) if "metric" in frame else ""
    segs = segments(values, idx)
    out = []
    for prev, seg in zip(segs[:-1], segs[1:], strict=True):
        r, lo, hi = ratio_interval(values[prev], values[seg])
        better = (r > 1) == higher
        at, last = int(rows[seg.start]), int(rows[seg.start - 1])
        out.append(Change(series=series, index=at, commit_before=commits[last],
                          commit_after=commits[at], before=float(values[prev].mean()),
                          after=float(values[seg].mean()), ratio=r, ratio_low=lo, ratio_high=hi,
                          direction="better" if better else "worse", metric=metric))
    return out


def changes(points: Any, **tuning: Any) -> list[Change]:
    """Every change point of every series of a points frame.

    ``points`` has the columns ``series, model, stack, machine, settings, metric, unit,
    higher_is_better, commit, commit_date, added_at, run, value, low, high``, one row per
    point, each series' rows in commit order (what ``HistoryStore.points()`` returns);
    ``tuning`` goes to :func:`detect`.
    """
    out: list[Change] = []
    if len(points) == 0:
        return out
    for name, frame in points.groupby("series", sort=False):
        out.extend(series_changes(frame, str(name), **tuning))
    return out


__all__ = ["BETA", "MIN_SIZE", "Change", "changes", "detect", "noise", "ratio_interval",
           "segments", "series_changes"]
