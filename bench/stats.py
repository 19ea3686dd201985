"""Statistics over raw latency samples: robust summaries, intervals, speedups, significance.

Everything takes the raw per-iteration samples and derives; nothing here is stored that
cannot be recomputed from them.
"""

from __future__ import annotations

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
PAIRED = ("paired rounds: median of per-round ratios, order-statistic 95% interval, "
          "Wilcoxon signed-rank")


@dataclass(frozen=True)
class Speedup:
    """How many times faster a candidate is than a reference, with a 95% interval and a test.

    Attributes:
        ratio: reference latency over candidate latency (>1: the candidate is faster).
        ci_low, ci_high: the 95% interval of the ratio.
        p_value: two-sided p-value of "no difference".
        significant: p < 0.05.
        method: how it was computed (:data:`INDEPENDENT` or :data:`PAIRED`).
        n: samples (independent: the smaller side) or paired rounds behind it.
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    method: str = INDEPENDENT
    n: int = 0

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
    p < 1 - confidence.
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
    return Speedup(
        ratio=ratio,
        ci_low=float(low),
        ci_high=float(high),
        p_value=p,
        significant=bool(p < 1 - confidence),
        method=INDEPENDENT,
        n=int(min(a.size, b.size)),
    )


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


def paired_speedup(log_ratios: Sequence[float], confidence: float = CONFIDENCE) -> Speedup:
    """Speedup from the per-round log ratios of two stacks timed in alternation.

    Each round timed both stacks within seconds of each other, so a round's ratio cancels
    whatever the machine did meanwhile. The estimate is the median per-round ratio, its
    interval the distribution-free order-statistic interval of that median (:func:`median_ci`),
    and the test Wilcoxon's signed-rank test of the log ratios around 0.
    """
    x = np.asarray(log_ratios, dtype=float)
    if x.size == 0:
        raise ValueError("no paired rounds")
    low, high, _ = median_ci(x, confidence)
    p = wilcoxon_p(x)
    return Speedup(
        ratio=float(np.exp(np.median(x))),
        ci_low=float(np.exp(low)),
        ci_high=float(np.exp(high)),
        p_value=p,
        significant=bool(p < 1 - confidence),
        method=PAIRED,
        n=int(x.size),
    )


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
