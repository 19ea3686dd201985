"""The figures behind docs/measurement.md's statistics section, by simulation (pure numpy):
the paired interval's coverage against its stated level, A/A false-alarm rates of the paired
verdict, of the gate's rule and of the report's run comparison of separate runs (through the
machine-speed probe), and the false discovery rate of Benjamini-Hochberg on a matrix.

    python tests/benchmarks/scripts/stats_simulation.py
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from bench.core import compare, stats
from bench.gate import Entry, Rules, compare_latency


def _noise(rng, kind, size):
    return rng.normal(0, 0.05, size) if kind == "normal" else 0.03 * rng.standard_t(2, size)


def coverage(sims: int = 20000) -> None:
    print("paired interval of the median: coverage (stated / simulated)")
    for kind in ("normal", "heavy"):
        for n in (6, 10, 20):
            rng = np.random.default_rng(n)
            true = np.log(1.3)
            x = np.sort(true + _noise(rng, kind, (sims, n)), axis=1)
            low, _, level = stats.median_ci(np.arange(n, dtype=float))
            j = int(low) + 1
            got = ((x[:, j - 1] <= true) & (true <= x[:, n - j])).mean()
            print(f"  {kind:6s} n={n:2d}: stated {level:.4f}, simulated {got:.4f}")


def aa_paired(sims: int = 20000) -> None:
    print("A/A false alarms of the paired verdict (machine drift of +-30% per round)")
    for n in (6, 10, 20):
        rng = np.random.default_rng(100 + n)
        drift = rng.uniform(0.7, 1.3, (sims, n, 1))
        t = 0.4 * drift * np.exp(rng.normal(0, 0.05, (sims, n, 2)))
        logs = np.sort(np.log(t[..., 0] / t[..., 1]), axis=1)
        low, _, _ = stats.median_ci(np.arange(n, dtype=float))
        j = int(low) + 1
        print(f"  n={n:2d}: {((logs[:, j - 1] > 0) | (logs[:, n - j] < 0)).mean():.4f}")


def _runs(rng, speed_a, speed_b, code=1.0, n=10):
    a = 0.4 * speed_a * np.exp(rng.normal(0, 0.04, n))
    b = 0.4 * speed_b * code * np.exp(rng.normal(0, 0.04, n))
    pa = 0.005 * speed_a * np.exp(rng.normal(0, 0.04, n))
    pb = 0.005 * speed_b * np.exp(rng.normal(0, 0.04, n))
    key = "m | baseline | b=1"
    return (Entry.from_latencies(key, a, run_id="A", probe_s=list(pa)),
            Entry.from_latencies(key, b, run_id="B", probe_s=list(pb)))


def separate_runs(sims: int = 1000) -> None:
    rng = np.random.default_rng(7)
    rules = Rules(max_slowdown=0.10)
    gate_alarms = report_alarms = caught = 0
    for _ in range(sims):
        base, cur = _runs(rng, *rng.uniform(0.7, 1.3, 2))
        gate_alarms += compare_latency(base, cur, rules).outcome == "regression"
        report_alarms += compare.latency_change(base.samples(), cur.samples()).verdict in ("faster", "slower")
        base, cur = _runs(rng, *rng.uniform(0.7, 1.3, 2), code=1.3)
        caught += compare_latency(base, cur, rules).outcome == "regression"
    print(f"separate runs, machine speed +-30% between them ({sims} pairs, 10 calls each): gate "
          f"A/A regressions {gate_alarms / sims:.3f}, report A/A faster/slower "
          f"{report_alarms / sims:.3f}, a 30% slower code caught {caught / sims:.3f}")


def fdr(sims: int = 2000) -> None:
    rng = np.random.default_rng(3)
    fdp, power = [], []
    for _ in range(sims):
        true = rng.random(100) < 0.3
        z = rng.normal(0, 1, 100) + np.where(true, 3.0, 0.0)
        found = np.asarray(stats.benjamini_hochberg(2 * norm.sf(np.abs(z)), 0.05))
        fdp.append((found & ~true).sum() / max(found.sum(), 1))
        power.append((found & true).sum() / max(true.sum(), 1))
    naive = []
    for _ in range(sims):
        true = rng.random(100) < 0.3
        z = rng.normal(0, 1, 100) + np.where(true, 3.0, 0.0)
        found = 2 * norm.sf(np.abs(z)) < 0.05
        naive.append((found & ~true).sum() / max(found.sum(), 1))
    print(f"matrix of 100 cells, 30 with an effect: false discovery rate {np.mean(fdp):.4f} with "
          f"Benjamini-Hochberg at 5% (power {np.mean(power):.3f}), {np.mean(naive):.4f} testing "
          "each cell at 5%")


if __name__ == "__main__":
    coverage()
    aa_paired()
    separate_runs()
    fdr()
