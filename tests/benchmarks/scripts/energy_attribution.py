"""Energy per stack from sampled power when stacks are timed in alternation, by simulation:
the error of each stack's integrated energy against the truth, for the previous method
(edges linearly interpolated across call boundaries, reimplemented here) and the current one
(:func:`bench.measure.samplers.energy.estimate`: only readings that resolve the stack's own calls),
or the current method's refusal and its reason.

    python tests/benchmarks/scripts/energy_attribution.py [--runs 200] [--seed 0]

Two stacks draw constant power, A 300 W and B 200 W, in calls of 100 ms, 1 s or 3 s, back to
back, in either strict alternation (A B A B ...) or the interleaved schedule's order (the
order reversed every round: A B B A A B ...), after two warm-up rounds and with idle power
(60 W) before them. The power steps between the stacks' levels, or (the "transitions" case) follows
each change with a first-order response of 20 ms, so that a call's first moments draw what
the previous call left. A sampler reads the power every 50 ms (random phase, +-5 ms of
wake-up jitter) either instantly or as a moving average over the last second (what
``nvmlDeviceGetPowerUsage`` reports on Ampere and newer). The truth is the energy drawn
inside each stack's timed calls. Every cell is the mean error over
``--runs`` random phases, with the worst run in brackets. No counter is simulated: the
counter path (windows of 1 s or more) is unchanged.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
from collections.abc import Sequence

import numpy as np

from bench.measure.samplers import energy

POWER_W = {"A": 300.0, "B": 200.0}
IDLE_W = 60.0
INTERVAL_S = 0.05
JITTER_S = 0.005
AVERAGE_S = 1.0
#: Time constant of the power's response to a change of stack, in the "transitions" case.
TAU_S = 0.02
ROUNDS = 20
WARMUP_ROUNDS = 2


def schedule(call_s: float, order: str) -> list[tuple[str, float, float, bool]]:
    """(stack, start, end, timed) of every call, back to back from t = 0."""
    calls, t = [], 0.0
    for r in range(WARMUP_ROUNDS + ROUNDS):
        pair = ("A", "B") if order == "alternating" or r % 2 == 0 else ("B", "A")
        for stack in pair:
            calls.append((stack, t, t + call_s, r >= WARMUP_ROUNDS))
            t += call_s
    return calls


class Truth:
    """The power drawn over time: each call's stack level, reached from the previous level
    with a first-order response of time constant ``tau_s`` (0: a step), idle power before the
    first call and after the last. Power and energy are exact (closed form)."""

    def __init__(self, calls: Sequence[tuple[str, float, float, bool]], tau_s: float) -> None:
        self.tau = tau_s
        self.starts = np.array([c[1] for c in calls] + [calls[-1][2]])
        self.goals = np.array([POWER_W[c[0]] for c in calls] + [IDLE_W])
        self.levels = np.empty(len(self.goals))  # the power as each segment starts
        self.joules = np.empty(len(self.goals))  # energy drawn from t = 0 to each start
        level, joules = IDLE_W, 0.0
        for i in range(len(self.goals)):
            self.levels[i], self.joules[i] = level, joules
            if i + 1 < len(self.goals):
                d = self.starts[i + 1] - self.starts[i]
                joules += self._partial(level, self.goals[i], d)
                level = self._level(level, self.goals[i], d)

    def _decay(self, d):
        return np.exp(-d / self.tau) if self.tau > 0 else np.where(d > 0, 0.0, 1.0)

    def _level(self, start, goal, d):
        return goal + (start - goal) * self._decay(d)

    def _partial(self, start, goal, d):
        lag = (start - goal) * self.tau * (1 - self._decay(d)) if self.tau > 0 else 0.0
        return goal * d + lag

    def _segment(self, t: np.ndarray):
        i = np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, len(self.goals) - 1)
        return i, np.maximum(t - self.starts[i], 0.0)

    def power_at(self, t: np.ndarray) -> np.ndarray:
        """Watts drawn at each time in ``t``."""
        i, d = self._segment(t)
        return np.where(t < 0, IDLE_W, self._level(self.levels[i], self.goals[i], d))

    def energy_at(self, t: np.ndarray) -> np.ndarray:
        """Joules drawn from t = 0 to each time in ``t`` (negative before it)."""
        i, d = self._segment(t)
        inside = self.joules[i] + self._partial(self.levels[i], self.goals[i], d)
        return np.where(t < 0, IDLE_W * t, inside)


def readings(truth: Truth, end: float, rng, averaging_s: float) -> tuple[list[float], list[float]]:
    """Sample times and power readings: instant, or averaged over the ``averaging_s`` before."""
    ts = np.arange(-0.2 + rng.uniform(0, INTERVAL_S), end + 0.2, INTERVAL_S)
    ts = np.sort(ts + rng.uniform(-JITTER_S, JITTER_S, len(ts)))
    if averaging_s > 0:
        ys = (truth.energy_at(ts) - truth.energy_at(ts - averaging_s)) / averaging_s
    else:
        ys = truth.power_at(ts)
    return ts.tolist(), ys.tolist()


def old_integrate(
    ts: Sequence[float], ys: Sequence[float], windows: Sequence[tuple[float, float]]
) -> float:
    """The previous method: trapezoids over the samples, each window's edge values linearly
    interpolated between the samples on either side of it (from the neighbouring call)."""

    def at(t: float) -> float:
        i = bisect.bisect_left(ts, t)
        if ts[i] == t:
            return ys[i]
        t0, t1, y0, y1 = ts[i - 1], ts[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (t - t0) / (t1 - t0)

    total = 0.0
    for t0, t1 in windows:
        inner = [(t, y) for t, y in zip(ts, ys, strict=True) if t0 < t < t1]
        points = [(t0, at(t0)), *inner, (t1, at(t1))]
        total += sum(
            (b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(points, points[1:], strict=False)
        )
    return total


def _percent(x: float) -> str:
    return "0.0" if abs(x) < 5e-4 else f"{x * 100:+.1f}"


def _cell(errors: list[float]) -> str:
    return f"{_percent(statistics.fmean(errors))}% [{_percent(max(errors, key=abs))}]"


def simulate(
    call_s: float, order: str, averaging_s: float, tau_s: float, runs: int, seed: int
) -> dict[str, str]:
    """Figures of one condition: per stack and method, the mean error (worst run) or why the
    current method refuses."""
    rng = np.random.default_rng(seed)
    calls = schedule(call_s, order)
    truth = Truth(calls, tau_s)
    old: dict[str, list[float]] = {s: [] for s in POWER_W}
    new: dict[str, list[float]] = {s: [] for s in POWER_W}
    refused: dict[str, str] = {}
    for _ in range(runs):
        ts, ys = readings(truth, calls[-1][2], rng, averaging_s)
        for stack in POWER_W:
            windows = [(a, b) for s, a, b, timed in calls if s == stack and timed]
            starts, ends = (np.array(c) for c in zip(*windows, strict=True))
            joules = float(np.sum(truth.energy_at(ends) - truth.energy_at(starts)))
            old[stack].append(old_integrate(ts, ys, windows) / joules - 1)
            est = energy.estimate(ts, windows, power=ys, power_averaging_s=averaging_s)
            if est.ok:
                new[stack].append(est.energy_j / joules - 1)
            else:
                refused[stack] = est.reason or ""
    out = {}
    for stack in POWER_W:
        out[f"old {stack}"] = _cell(old[stack])
        out[f"new {stack}"] = (
            _cell(new[stack]) if new[stack] and stack not in refused else "unavailable"
        )
    out["reason"] = next(iter(refused.values()), "")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=200, help="random sampling phases per condition"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"A {POWER_W['A']:g} W, B {POWER_W['B']:g} W; sampled every {INTERVAL_S * 1000:g} ms "
        f"(+-{JITTER_S * 1000:g} ms); {ROUNDS} timed rounds; mean error over {args.runs} phases "
        "[worst run]"
    )
    print()
    print("| calls | order | power reading | old A | old B | new A | new B |")
    print("|---|---|---|---|---|---|---|")
    reasons = {}
    k = 0
    cases = (
        ("instant", 0.0, 0.0),
        (f"instant, {TAU_S * 1000:g} ms transitions", 0.0, TAU_S),
        (f"{AVERAGE_S:g} s average", AVERAGE_S, 0.0),
    )
    for reading, averaging_s, tau_s in cases:
        for call_s in (0.1, 1.0, 3.0):
            for order in ("alternating", "interleaved"):
                k += 1
                row = simulate(call_s, order, averaging_s, tau_s, args.runs, args.seed + k)
                print(
                    f"| {call_s * 1000:g} ms | {order} | {reading} | {row['old A']} | {row['old B']} "
                    f"| {row['new A']} | {row['new B']} |"
                )
                if row["reason"]:
                    reasons[(call_s, reading)] = row["reason"]
    if reasons:
        print()
        print("refusals of the current method:")
        for (call_s, reading), reason in reasons.items():
            print(f"  {call_s * 1000:g} ms calls, {reading}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
