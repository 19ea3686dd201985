"""The gate that reads history: judge a new point against its series' recent segment.

The recent segment is every point since the series' last change point
(:func:`bench.history.changepoints.detect`). A new point is a **regression** when it is both

* outside the segment's 99% prediction interval: the segment's mean, the series' noise
  (pooled over all its segments, so a short segment borrows the series' spread; Student t
  with the pooled degrees of freedom), widened where the new point's own interval is wider
  than its segment's points' were (their scatter already holds their own noise); and
* worse than the segment's centre by more than ``threshold``: for a higher-is-better metric
  ``1 - new / centre``, for a lower-is-better one ``new / centre - 1`` (as the baseline
  gate's slowdown).

Positive series are judged in log space (a constant coefficient of variation is a constant
noise there); the centre is then the segment's geometric mean.

**Creep** (with ``creep`` set): a drift the step test does not see. The Theil-Sen slope of
the last ``creep_window`` points plus the new one, times the window's length, relative to the
fitted value at the window's start, is worse than ``creep`` and its 99% interval excludes
no drift. **Insufficient**: the segment has fewer than 3 points and no creep was found.

Measured by ``tests/bench/history/test_judge.py`` (``pytest -s``; seeded, each point with
the 95% interval of its own noise): 10 A/A points per seed, each judged against the ones
before it and then added, 100 seeds (about 690 judged points) at CV 5% and 10%: 0 and 1
alarms at threshold 30% (0.00%, 0.14% per point), 1 and 2 with ``creep=0.10`` as well,
0 and 1 at threshold 5%; over 1000 seeds (slow test) at threshold 5% with ``creep=0.10``:
0.04% and 0.12% per point. A 30% loss (threshold 20%) is caught 99/100 times after 10
points and 89/100 after 6 at CV 5%; at CV 10%, where it is only about 2.5 noise widths
(the new point's own noise included), 42/100 and 10/100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bench.history.changepoints import Z95, detect, noise, segments

#: Points a segment needs before a new point is judged against it.
MIN_POINTS = 3
#: Two-sided level of the prediction interval.
PREDICTION_LEVEL = 0.99
#: Level of the Theil-Sen slope interval that must exclude no drift for creep.
CREEP_LEVEL = 0.99


@dataclass
class Judgement:
    """The verdict on one new point and what the history expected of it."""

    verdict: Literal["pass", "regression", "creep", "insufficient"]
    reason: str
    #: Position of the first point of the segment judged against, among the history's
    #: points with a finite value.
    segment_start: int
    #: (centre, low, high) of the prediction; NaN where there was too little history.
    expected: tuple[float, float, float]


def _column(history: Any, name: str, n: int) -> np.ndarray:
    if name in history:
        return history[name].to_numpy(dtype=float)
    return np.full(n, math.nan)


def _worse_by(new: float, centre: float, higher_is_better: bool) -> float:
    """How much worse ``new`` is than ``centre``, as a fraction (negative: better)."""
    if centre == 0:
        return math.nan
    return 1 - new / centre if higher_is_better else new / centre - 1


def _pooled_sd(y: np.ndarray, segs: list[slice]) -> tuple[float, int]:
    """The within-segment standard deviation pooled over ``segs``, and its degrees of freedom."""
    ss = sum(float(((y[s] - y[s].mean()) ** 2).sum()) for s in segs)
    df = len(y) - len(segs)
    return (math.sqrt(ss / df) if df > 0 else math.nan), df


def _own_se(new_low: float | None, new_high: float | None, log: bool) -> float:
    """The new point's standard error from its interval (0 without one)."""
    if new_low is None or new_high is None:
        return 0.0
    lo, hi = float(new_low), float(new_high)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or (log and lo <= 0):
        return 0.0
    return ((math.log(hi) - math.log(lo)) if log else (hi - lo)) / (2 * Z95)


def _extra_variance(own: float, lows: np.ndarray, highs: np.ndarray, log: bool,
                    sd: float) -> float:
    """How much more variance the new point's own interval carries than the segment's points
    had (their scatter already holds their own noise): ``own**2`` less the typical point's
    interval variance (or, where the segment's points have no intervals, the scatter's)."""
    ok = np.isfinite(lows) & np.isfinite(highs) & (highs > lows) & (~log | (lows > 0))
    if ok.any():
        lo, hi = lows[ok], highs[ok]
        widths = (np.log(hi) - np.log(lo)) if log else (hi - lo)
        typical = float(np.median(widths)) / (2 * Z95)
    else:
        typical = sd
    return max(0.0, own * own - typical * typical)


def drift(values: np.ndarray, higher_is_better: bool) -> tuple[float, float, float]:
    """Theil-Sen drift over ``values`` (in order): the worse-direction change across the
    window as a fraction of its fitted start, and the same at the two ends of the slope's
    interval at :data:`CREEP_LEVEL` (low, high: the less and the more worrying)."""
    from scipy.stats import theilslopes

    y = np.asarray(values, dtype=float)
    x = np.arange(len(y), dtype=float)
    slope, intercept, lo, hi = theilslopes(y, x, alpha=CREEP_LEVEL)
    span = len(y) - 1
    start = intercept
    if start == 0:
        return math.nan, math.nan, math.nan
    sign = -1.0 if higher_is_better else 1.0
    rel = sorted(sign * s * span / abs(start) for s in (slope, lo, hi))
    return sign * slope * span / abs(start), rel[0], rel[2]


def _creep(values: np.ndarray, new_value: float, creep: float, window: int,
           higher_is_better: bool) -> str | None:
    """Why the last ``window`` points plus the new one creep worse by ``creep``, or None."""
    if window < 2 or len(values) < window:
        return None
    tail = np.append(values[-window:], new_value)
    size, low, _ = drift(tail, higher_is_better)
    if not math.isfinite(size) or size < creep or low <= 0:
        return None
    return (f"drifted {size:.1%} worse over the last {len(tail)} points (Theil-Sen; "
            f"{CREEP_LEVEL:.0%} interval from {low:.1%}), more than the creep limit {creep:.0%}, "
            "with no single step")


def judge(history: Any, new_value: float, new_low: float | None, new_high: float | None, *,
          higher_is_better: bool, threshold: float, creep: float | None = None,
          creep_window: int = 8, **tuning: Any) -> Judgement:
    """Judge ``new_value`` (with its interval, where it has one) against ``history``.

    ``history`` is one series' points in order (a frame with at least ``value``, and
    ``low``/``high``/``commit`` where known, as ``HistoryStore.points()`` returns); see the
    module docstring for the rule. ``tuning`` goes to the change-point detector.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if creep is not None and creep <= 0:
        raise ValueError(f"creep must be > 0, got {creep}")
    if not math.isfinite(float(new_value)):
        return Judgement("insufficient", f"the new value {new_value} is not a finite number", 0,
                         (math.nan, math.nan, math.nan))
    if len(history):  # points without a finite value are left out
        history = history[np.isfinite(history["value"].to_numpy(dtype=float))]
    values = history["value"].to_numpy(dtype=float) if len(history) else np.array([])
    n = len(values)
    lows, highs = _column(history, "low", n), _column(history, "high", n)
    new_value = float(new_value)
    ends = np.concatenate([lows, highs])
    ends = ends[np.isfinite(ends)]
    log = n > 0 and bool(np.all(values > 0) and np.all(ends > 0)) and new_value > 0
    idx = detect(values, lows, highs, **tuning) if n else []
    start = idx[-1] if idx else 0
    seg = values[start:]
    creep_reason = (_creep(values, new_value, creep, creep_window, higher_is_better)
                    if creep is not None else None)
    since = _since(history, start)

    if len(seg) < MIN_POINTS:
        centre = float(np.exp(np.log(seg).mean()) if log else seg.mean()) if len(seg) else math.nan
        expected = (centre, math.nan, math.nan)
        if creep_reason:
            return Judgement("creep", creep_reason, start, expected)
        return Judgement("insufficient", f"{len(seg)} point(s) since the last change point"
                         f"{since}; {MIN_POINTS} are needed", start, expected)

    y = np.log(values) if log else values
    sd, df = _pooled_sd(y, segments(y, idx))
    # no smaller than the points' own intervals (and successive differences) say: segmenting
    # a short series fits some of its noise away
    ly, hy = (np.log(lows), np.log(highs)) if log else (lows, highs)
    sd = max(sd, float(np.median(noise(y, ly, hy))))
    m = float(y[start:].mean())
    extra = _extra_variance(_own_se(new_low, new_high, log), lows[start:], highs[start:], log, sd)
    from scipy.stats import t as student

    half = float(student.ppf(0.5 + PREDICTION_LEVEL / 2, df)) * math.sqrt(
        sd * sd * (1 + 1 / len(seg)) + extra)
    lo, hi = m - half, m + half
    if log:
        centre, lo, hi = math.exp(m), math.exp(lo), math.exp(hi)
    else:
        centre = m
    expected = (centre, lo, hi)
    worse = _worse_by(new_value, centre, higher_is_better)
    outside = new_value < lo if higher_is_better else new_value > hi
    what = (f"{new_value:.4g} against {centre:.4g} expected ({lo:.4g} to {hi:.4g}, "
            f"{len(seg)} points{since})")
    if outside and worse > threshold:
        return Judgement("regression", f"{worse:.1%} worse, beyond {threshold:.0%} and outside "
                         f"the prediction: {what}", start, expected)
    if creep_reason:
        return Judgement("creep", creep_reason, start, expected)
    if outside and worse > 0:
        return Judgement("pass", f"{worse:.1%} worse, outside the prediction but within "
                         f"{threshold:.0%}: {what}", start, expected)
    if outside:
        return Judgement("pass", f"{-worse:.1%} better: {what}", start, expected)
    return Judgement("pass", f"within the prediction: {what}", start, expected)


def _since(history: Any, start: int) -> str:
    if "commit" not in history or start >= len(history) or start == 0:
        return ""
    return f" since commit {str(history['commit'].iloc[start])[:10]}"


__all__ = ["CREEP_LEVEL", "MIN_POINTS", "PREDICTION_LEVEL", "Judgement", "drift", "judge"]
