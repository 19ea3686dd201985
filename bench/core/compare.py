"""The one comparison engine: is one measurement faster or slower than another, and how sure?

Every place that compares latencies goes through here: the speedup of each stack over its
run's reference (:mod:`bench.measure.engine`), the regression gate (:mod:`bench.gate`) and the
report's run-against-run comparison (:mod:`reports.compare`). So they match measurements on
the same key and call "slower" by the same rule.

* **Matching**: :func:`match_key`, ``model | strategy | b=<batch size>``.
* **Paired** whenever both sides are stacks of one interleaved run (the same ``run_id``, rounds
  recorded, at least :data:`MIN_PAIRED_ROUNDS` rounds in common): the median per-round ratio,
  its order-statistic interval and the sign test, which agree by construction; a round's
  ratio cancels whatever the machine did meanwhile. Fewer than 6 rounds give no 95% interval:
  the verdict is then ``inconclusive``, never a silent switch to an unpaired test.
* **Separate runs through the machine's speed** where both sides carry the machine-speed probe
  of :mod:`bench.measure.probe` (every engine run times it between calls): the ratio of medians with
  the probe's change divided out, and a bootstrap interval over calls and probe samples
  (:func:`bench.core.stats.probe_corrected_speedup`). The calls of one run are not samples of the
  machine's speed across runs, so two separate runs are never compared as if they were.
* **Independent** otherwise, on raw samples (stacks of one sequential run; inputs without a
  probe): the ratio of medians, a bootstrap interval and Mann-Whitney U.
* **Intervals only** where raw samples were not kept (a pytest-benchmark save without its
  data): the ratio of medians, "significant" only when the two 95% intervals do not overlap.

Latencies are compared per image, so a different batch size changes nothing but the note.
This module imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.core import stats

#: Rounds two stacks of one interleaved run must share to be compared round by round.
MIN_PAIRED_ROUNDS = 2
#: Rounds a paired comparison needs for a 95% interval (and so for a verdict other than
#: inconclusive): the order-statistic interval of 5 rounds covers 93.75% at most.
MIN_CONFIDENT_ROUNDS = 6
#: Significance level unless configured.
ALPHA = 0.05
INTERVALS = "95% intervals of the medians (no raw samples): significant only when apart"


def match_key(model: str | None, strategy: str | None, settings: dict[str, Any], fallback: str) -> str:
    """``model | strategy | b=<batch>`` where model and strategy are known, else ``fallback``."""
    if model and strategy:
        batch = settings.get("batch_size")
        return f"{model} | {strategy}" + (f" | b={batch}" if batch is not None else "")
    return fallback


@dataclass(frozen=True)
class Samples:
    """What a comparison needs of one measured configuration.

    Attributes:
        latencies_s: raw per-call latencies, where kept.
        batch_size: images per call (latencies are compared per image).
        rounds: the interleaved round of each latency, where recorded.
        run_id: the run that measured it (two stacks of one run can be paired).
        median_ms, ci_low_ms, ci_high_ms: the median per call and its 95% interval, for inputs
            without raw samples.
        probe_s: the run's machine-speed probe samples (:mod:`bench.measure.probe`), where recorded.
    """

    latencies_s: Sequence[float] | None = None
    batch_size: int = 1
    rounds: Sequence[int] | None = None
    run_id: str | None = None
    median_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    probe_s: Sequence[float] | None = None

    def per_image(self) -> list[float]:
        b = max(int(self.batch_size or 1), 1)
        return [float(t) / b for t in self.latencies_s or []]

    @property
    def has_raw(self) -> bool:
        return bool(self.latencies_s)


def paired_rounds(reference: Samples, candidate: Samples) -> list[float] | None:
    """Per-round log(reference / candidate) per image, when the two are stacks of one
    interleaved run with enough rounds in common; None otherwise."""
    if not (reference.run_id and reference.run_id == candidate.run_id):
        return None
    for s in (reference, candidate):
        if not s.rounds or not s.latencies_s or len(s.rounds) != len(s.latencies_s):
            return None
    ratios = stats.paired_log_ratios(reference.per_image(), reference.rounds,  # type: ignore[arg-type]
                                     candidate.per_image(), candidate.rounds)  # type: ignore[arg-type]
    return ratios if len(ratios) >= MIN_PAIRED_ROUNDS else None


def speedup(reference: Samples, candidate: Samples) -> stats.Speedup | None:
    """How many times faster ``candidate`` is than ``reference`` (per image), by the best
    method the two allow; None when either has no latency at all."""
    pairs = paired_rounds(reference, candidate)
    if pairs is not None:
        return stats.paired_speedup(pairs)
    separate = not (reference.run_id and reference.run_id == candidate.run_id)
    if separate and reference.has_raw and candidate.has_raw and reference.probe_s and candidate.probe_s:
        return stats.probe_corrected_speedup(reference.per_image(), candidate.per_image(),
                                             reference.probe_s, candidate.probe_s)
    if reference.has_raw and candidate.has_raw:
        return stats.speedup(reference.per_image(), candidate.per_image())
    return _from_intervals(reference, candidate)


def _from_intervals(reference: Samples, candidate: Samples) -> stats.Speedup | None:
    a, b = reference, candidate
    if None in (a.median_ms, a.ci_low_ms, a.ci_high_ms, b.median_ms, b.ci_low_ms, b.ci_high_ms):
        return None
    ka, kb = max(a.batch_size, 1), max(b.batch_size, 1)
    if not b.median_ms or b.ci_low_ms <= 0 or b.ci_high_ms <= 0:  # type: ignore[operator]
        return None
    ratio = (a.median_ms / ka) / (b.median_ms / kb)  # type: ignore[operator]
    low = (a.ci_low_ms / ka) / (b.ci_high_ms / kb)  # type: ignore[operator]
    high = (a.ci_high_ms / ka) / (b.ci_low_ms / kb)  # type: ignore[operator]
    apart = a.ci_low_ms / ka > b.ci_high_ms / kb or a.ci_high_ms / ka < b.ci_low_ms / kb  # type: ignore[operator]
    return stats.Speedup(ratio=ratio, ci_low=low, ci_high=high, p_value=math.nan,
                         significant=bool(apart), method=INTERVALS, n=0,
                         verdict=stats.verdict(low, high, bool(apart)))


@dataclass(frozen=True)
class LatencyChange:
    """How the current latency relates to the baseline's.

    Attributes:
        ratio: current over baseline latency per image (>1: slower).
        ci_low, ci_high: its 95% interval.
        p_value: the test's p-value (NaN where only intervals were compared).
        significant: the test (or the intervals) says the two differ.
        direction: ``slower``, ``faster`` or None (no significant change).
        method: how it was computed (paired, independent or intervals).
        n: paired rounds, or the smaller sample.
        verdict: ``slower``, ``faster``, ``equivalent`` or ``inconclusive`` (of the current
            against the baseline).
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    direction: str | None
    method: str
    n: int
    verdict: str = stats.INCONCLUSIVE

    @property
    def change(self) -> float:
        """Relative change of the latency: +0.10 is 10% slower."""
        return self.ratio - 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_change(baseline: Samples, current: Samples, alpha: float = ALPHA,
                   margin: float = stats.MARGIN) -> LatencyChange | None:
    """The change from ``baseline`` to ``current``; None when either has no latency."""
    sp = speedup(baseline, current)
    if sp is None:
        return None
    significant = bool(sp.significant)
    ratio = 1 / sp.ratio
    direction = None
    if significant and ratio != 1:
        direction = "slower" if ratio > 1 else "faster"
    word = stats.verdict(sp.ci_low, sp.ci_high, significant, margin)
    if sp.method == stats.PAIRED and sp.ci_level < stats.CONFIDENCE:
        word = stats.INCONCLUSIVE
    return LatencyChange(ratio=ratio, ci_low=1 / sp.ci_high, ci_high=1 / sp.ci_low,
                         p_value=sp.p_value, significant=significant, direction=direction,
                         method=sp.method, n=sp.n, verdict=word)


def verdicts(speedups: Sequence[dict[str, Any] | stats.Speedup | None], q: float = ALPHA,
             margin: float = stats.MARGIN) -> list[str | None]:
    """The word of each of many comparisons made at once (a run's stacks, a matrix, tune's
    candidates): ``faster``/``slower`` only for the comparisons that stay discoveries under
    Benjamini-Hochberg at false discovery rate ``q``; ``equivalent`` when the interval lies
    within ``margin``; else ``inconclusive``. None where there is no comparison."""
    items = [sp.as_dict() if isinstance(sp, stats.Speedup) else sp for sp in speedups]
    p_values = [_p(d) for d in items]
    discovered = stats.benjamini_hochberg(p_values, q)  # over every comparison with a test
    out: list[str | None] = []
    for d, p, found in zip(items, p_values, discovered, strict=True):
        if not d or d.get("ratio") is None:
            out.append(None)
            continue
        if math.isnan(p):  # no test (intervals only): nothing to adjust
            found = True
        low, high = float(d.get("ci_low") or math.nan), float(d.get("ci_high") or math.nan)
        level = d.get("ci_level", stats.CONFIDENCE)
        if d.get("method") == stats.PAIRED and level is not None and level < stats.CONFIDENCE:
            out.append(stats.INCONCLUSIVE)
            continue
        out.append(stats.verdict(low, high, bool(d.get("significant")) and found, margin))
    return out


def _p(d: dict[str, Any] | None) -> float:
    """A comparison's p-value, NaN where it has none (no comparison, intervals only)."""
    value = (d or {}).get("p_value") if (d or {}).get("ratio") is not None else None
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


#: What the printed verdicts of many comparisons say about their error control.
FDR_NOTE = ("faster/slower: the 95% interval excludes no change and the test agrees, with the "
            "false discovery rate held at 5% over the {n} comparisons (Benjamini-Hochberg); "
            "equivalent: the whole interval within +-{margin:.0%}; inconclusive: neither")


def short_method(method: str) -> str:
    """A few words for tables: ``paired``, ``probe-corrected``, ``Mann-Whitney`` or
    ``intervals``."""
    if method == stats.PAIRED:
        return "paired"
    if method == stats.PROBED:
        return "probe-corrected"
    if method == stats.INDEPENDENT:
        return "Mann-Whitney"
    return "intervals"


__all__ = [
    "ALPHA", "MIN_CONFIDENT_ROUNDS", "MIN_PAIRED_ROUNDS", "LatencyChange", "Samples", "latency_change", "match_key",
    "paired_rounds", "short_method", "speedup", "verdicts", "FDR_NOTE",
]
