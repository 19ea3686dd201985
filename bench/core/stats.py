"""Statistics over raw latency samples: robust summaries, intervals, speedups, significance.

Everything takes the raw per-iteration samples and derives; nothing here is stored that
cannot be recomputed from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Robust summary of a latency sample (same unit as the samples).

    ``ci_low``/``ci_high`` bound the median with the distribution-free order-statistic
    interval; ``ci_level`` is its exact coverage, which for small ``n`` falls short of 95%.
    """

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    mean: float
    stdev: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    ci_level: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def median_ci(samples: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    Returns ``(low, high, coverage)`` with low = x_(j), high = x_(n-j+1) (1-based ranks of
    the sorted sample), j the largest rank whose exact binomial coverage
    1 - 2 P(B <= j-1), B ~ Binomial(n, 1/2), is still at least ``confidence``; when even
    j = 1 falls short, the full range with its actual coverage.
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return float(x[0]), float(x[0]), 0.0
    j = 1
    for cand in range(1, n // 2 + 1):
        coverage = 1 - 2 * binom.cdf(cand - 1, n, 0.5)
        if coverage >= confidence:
            j = cand
        else:
            break
    coverage = 1 - 2 * binom.cdf(j - 1, n, 0.5)
    return float(x[j - 1]), float(x[n - j]), float(coverage)


def summarize(samples: Sequence[float]) -> Summary:
    """Median, quartiles (linear interpolation), IQR, mean, stdev and the median's interval."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarise")
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    low, high, level = median_ci(x)
    return Summary(
        n=int(x.size),
        median=float(med),
        q1=float(q1),
        q3=float(q3),
        iqr=float(q3 - q1),
        mean=float(x.mean()),
        stdev=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        ci_low=low,
        ci_high=high,
        ci_level=level,
    )


def relative_half_width(summary: Summary) -> float:
    """The larger distance from the median to an end of its interval, relative to it."""
    if summary.median == 0:
        return float("inf")
    return max(summary.median - summary.ci_low, summary.ci_high - summary.median) / abs(summary.median)


#: How :func:`speedup` compares independent samples.
INDEPENDENT = "independent samples: ratio of medians, bootstrap 95% interval, Mann-Whitney U"
#: How :func:`paired_speedup` compares the rounds of an interleaved run.
PAIRED = ("paired rounds: median of per-round ratios, order-statistic interval, sign test "
          "(the interval excludes 1 exactly when the test rejects)")

#: The four words every comparison reads as.
FASTER, SLOWER, EQUIVALENT, INCONCLUSIVE = "faster", "slower", "equivalent", "inconclusive"
VERDICTS = (FASTER, SLOWER, EQUIVALENT, INCONCLUSIVE)
#: The practical margin of "equivalent": the whole interval within +-5% of no change.
MARGIN = 0.05


def verdict(ratio_low: float, ratio_high: float, significant: bool, margin: float = MARGIN) -> str:
    """The word for a speedup interval [``ratio_low``, ``ratio_high``] (>1: faster):
    ``equivalent`` when the whole interval lies within ``margin`` of no change (log-symmetric:
    between 1/(1+margin) and 1+margin), else ``faster``/``slower`` when the interval excludes
    1 and the test agrees (``significant``), else ``inconclusive``."""
    if not (math.isfinite(ratio_low) and math.isfinite(ratio_high)):
        return INCONCLUSIVE
    if 1 / (1 + margin) <= ratio_low and ratio_high <= 1 + margin:
        return EQUIVALENT
    if significant and ratio_low > 1:
        return FASTER
    if significant and ratio_high < 1:
        return SLOWER
    return INCONCLUSIVE


def benjamini_hochberg(p_values: Sequence[float], q: float = 0.05) -> list[bool]:
    """Which of ``p_values`` are discoveries at false discovery rate ``q`` (Benjamini-Hochberg
    step-up; NaN is never a discovery)."""
    p = np.asarray([x if x is not None and not math.isnan(x) else np.inf for x in p_values],
                   dtype=float)
    m = int(np.isfinite(p).sum())
    out = [False] * len(p)
    if m == 0:
        return out
    order = np.argsort(p)
    passed = [k for k, i in enumerate(order, start=1) if p[i] <= q * k / m]
    if passed:
        for i in order[: max(passed)]:
            out[int(i)] = True
    return out


@dataclass(frozen=True)
class Speedup:
    """How many times faster a candidate is than a reference, with a 95% interval and a test.

    Attributes:
        ratio: reference latency over candidate latency (>1: the candidate is faster).
        ci_low, ci_high: the 95% interval of the ratio.
        p_value: two-sided p-value of "no difference".
        significant: the test rejects "no difference" at the interval's level (paired: exactly
            when the interval excludes 1).
        method: how it was computed (:data:`INDEPENDENT` or :data:`PAIRED`).
        n: samples (independent: the smaller side) or paired rounds behind it.
        ci_level: the interval's actual coverage (order-statistic intervals of few rounds
            cover more than 95%; under 6 rounds even the full range covers less).
        verdict: one of :data:`VERDICTS` at the default margin (:func:`verdict`).
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    method: str = INDEPENDENT
    n: int = 0
    ci_level: float = CONFIDENCE
    verdict: str = INCONCLUSIVE

    def as_dict(self) -> dict[str, float | bool | str | int]:
        return asdict(self)

    @property
    def relative_half_width(self) -> float:
        """The larger distance from the ratio to an end of its interval, relative to it."""
        return max(self.ratio - self.ci_low, self.ci_high - self.ratio) / self.ratio


def speedup(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = 2000,
    seed: int = 0,
) -> Speedup:
    """How many times faster ``candidate`` is than ``baseline`` (>1 is faster).

    The interval resamples both samples independently (seeded, so reproducible); the
    p-value is the two-sided Mann-Whitney U test on the raw samples. ``significant`` means
    p < 1 - confidence and an interval that excludes 1 (both must agree).
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    ratio = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    ra = np.median(rng.choice(a, size=(resamples, a.size), replace=True), axis=1)
    rb = np.median(rng.choice(b, size=(resamples, b.size), replace=True), axis=1)
    ratios = ra / rb
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    p = mann_whitney_p(a, b)
    significant = bool(p < 1 - confidence and (low > 1 or high < 1))  # test and interval agree
    return Speedup(
        ratio=ratio,
        ci_low=float(low),
        ci_high=float(high),
        p_value=p,
        significant=significant,
        method=INDEPENDENT,
        n=int(min(a.size, b.size)),
        ci_level=confidence,
        verdict=verdict(float(low), float(high), significant),
    )


#: How :func:`probe_corrected_speedup` compares two separate runs.
PROBED = ("separate runs: ratio of medians with the machine-speed probe's change divided out, "
          "bootstrap 95% interval over calls and probe samples")


def probe_corrected_speedup(
    baseline: Sequence[float],
    candidate: Sequence[float],
    baseline_probe: Sequence[float],
    candidate_probe: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = 4000,
    seed: int = 0,
    margin: float = MARGIN,
) -> Speedup:
    """How many times faster ``candidate`` is than ``baseline``, measured in two separate
    runs, with the change of the machine's own speed between them divided out.

    ``*_probe`` are each run's machine-speed probe samples (:mod:`bench.measure.probe`). The speedup
    is (median baseline / median baseline probe) / (median candidate / median candidate
    probe): a machine 30% slower during the candidate's run slows its probe as much. The
    interval resamples the four samples independently; the test is the interval itself
    (p-value: twice the bootstrap share on the far side of 1), so they agree.
    """
    a, b = np.asarray(baseline, float), np.asarray(candidate, float)
    pa, pb = np.asarray(baseline_probe, float), np.asarray(candidate_probe, float)
    if min(a.size, b.size, pa.size, pb.size) == 0:
        raise ValueError("every sample needs at least one value")
    ratio = float((np.median(a) / np.median(pa)) / (np.median(b) / np.median(pb)))
    rng = np.random.default_rng(seed)

    def medians(x: np.ndarray) -> np.ndarray:
        return np.median(rng.choice(x, size=(resamples, x.size), replace=True), axis=1)

    boot = (medians(a) / medians(pa)) / (medians(b) / medians(pb))
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(boot, [alpha, 1 - alpha]))
    p = float(min(1.0, 2 * min((boot <= 1).mean(), (boot >= 1).mean())))
    significant = bool(low > 1 or high < 1)
    return Speedup(ratio=ratio, ci_low=low, ci_high=high, p_value=p, significant=significant,
                   method=PROBED, n=int(min(a.size, b.size)), ci_level=confidence,
                   verdict=verdict(low, high, significant, margin))


def machine_change(baseline_probe: Sequence[float], candidate_probe: Sequence[float]) -> float:
    """How much slower the machine ran during the candidate's run than during the
    baseline's, by their probes' medians (+0.27: 27% slower)."""
    return float(np.median(np.asarray(candidate_probe, float)) /
                 np.median(np.asarray(baseline_probe, float)) - 1)


def round_means(latencies: Sequence[float], rounds: Sequence[int]) -> dict[int, float]:
    """Mean latency of each round (a round may hold several calls of one stack)."""
    sums: dict[int, list[float]] = {}
    for r, t in zip(rounds, latencies, strict=True):
        sums.setdefault(int(r), []).append(float(t))
    return {r: sum(v) / len(v) for r, v in sums.items()}


def paired_log_ratios(
    reference: Sequence[float], reference_rounds: Sequence[int],
    candidate: Sequence[float], candidate_rounds: Sequence[int],
) -> list[float]:
    """log(reference / candidate) of the rounds both were timed in (>0: candidate faster)."""
    a = round_means(reference, reference_rounds)
    b = round_means(candidate, candidate_rounds)
    return [float(np.log(a[r] / b[r])) for r in sorted(set(a) & set(b))]


def paired_speedup(log_ratios: Sequence[float], confidence: float = CONFIDENCE,
                   margin: float = MARGIN) -> Speedup:
    """Speedup from the per-round log ratios of two stacks timed in alternation.

    Each round timed both stacks within seconds of each other, so a round's ratio cancels
    whatever the machine did meanwhile. One estimator whose parts agree: the estimate is the
    median per-round ratio, its interval the distribution-free order-statistic interval of
    that median (:func:`median_ci`, with its actual coverage), and the test the sign test of
    the log ratios around 0, which rejects at the interval's level exactly when the interval
    excludes 0 (the interval is the sign test inverted).
    """
    x = np.asarray(log_ratios, dtype=float)
    if x.size == 0:
        raise ValueError("no paired rounds")
    low, high, level = median_ci(x, confidence)
    significant = bool(x.size > 1 and (low > 0 or high < 0) and level >= confidence)
    ratio_low, ratio_high = float(np.exp(low)), float(np.exp(high))
    return Speedup(
        ratio=float(np.exp(np.median(x))),
        ci_low=ratio_low,
        ci_high=ratio_high,
        p_value=sign_test_p(x),
        significant=significant,
        method=PAIRED,
        n=int(x.size),
        ci_level=level,
        verdict=verdict(ratio_low, ratio_high, significant, margin) if level >= confidence
        else INCONCLUSIVE,
    )


def sign_test_p(x: Sequence[float]) -> float:
    """Two-sided exact sign test of ``x`` around 0 (zeros count half each way)."""
    from scipy.stats import binom

    x = np.asarray(x, dtype=float)
    n = x.size
    if n == 0:
        return 1.0
    below = float((x < 0).sum() + 0.5 * (x == 0).sum())
    k = min(below, n - below)
    return float(min(1.0, 2 * binom.cdf(math.floor(k), n, 0.5)))


def wilcoxon_p(x: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``x`` around 0 (1.0 when all are 0)."""
    from scipy.stats import wilcoxon

    x = np.asarray(x, dtype=float)
    if x.size == 0 or np.all(x == 0):
        return 1.0
    return float(wilcoxon(x, alternative="two-sided").pvalue)


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value; 1.0 when the test is undefined (all ties)."""
    from scipy.stats import mannwhitneyu

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return 1.0
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
