"""Comparing runs: per strategy, did it get faster or slower, and is the change significant?

The first run is the reference; every later run is compared with it, strategy by strategy.
Matching and the faster/slower rule are those of the regression gate, from the one
comparison engine :mod:`bench.core.compare`: entries match on model, strategy and batch size;
latency is compared per image, on the raw timed calls (two stacks of one interleaved run:
round by round, median of per-round ratios and the sign test; runs measured apart: the ratio
of medians with each run's machine-speed probe divided out, with a bootstrap 95% interval).
Every change reads as one of four words: faster or slower (the interval excludes no change
and the test agrees, the false discovery rate held at 5% over the strategies compared),
equivalent (the interval within +-5%) or inconclusive, whatever the medians say. Quality changes
are reported with their direction from each metric's declaration (there are no per-image
quality samples in the record to test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.core import compare, stats
from bench.core.config import COMPARED_SETTINGS
from reports.data import Entry, RunData, finite

ALPHA = compare.ALPHA


@dataclass(frozen=True)
class QualityChange:
    """One metric's value in the reference and in the later run."""

    metric: str
    label: str
    before: float | None
    after: float | None
    higher_is_better: bool

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        if math.isinf(self.before) and math.isinf(self.after) and self.before == self.after:
            return 0.0
        return self.after - self.before

    @property
    def lost(self) -> bool:
        """The reference had a number and the later run has none (NaN or not measured): a
        regression, never an unknown."""
        had = self.before is not None and not math.isnan(self.before)
        return had and (self.after is None or math.isnan(self.after))

    @property
    def better(self) -> bool | None:
        """True if the later run is better, False if worse (a lost value included), None if
        equal or unknown."""
        if self.lost:
            return False
        d = self.delta
        if d is None or d == 0 or math.isnan(d):
            return None
        return (d > 0) == self.higher_is_better


@dataclass
class Change:
    """One strategy's change from the reference run to a later run."""

    model: str
    strategy: str
    reference: str
    run: str
    verdict: str
    before_ms: float | None = None
    after_ms: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    method: str | None = None
    n_before: int = 0
    n_after: int = 0
    quality: list[QualityChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float | None:
        """Change of the median latency per image, in percent (negative: faster)."""
        if not finite(self.before_ms) or not finite(self.after_ms) or self.before_ms == 0:
            return None
        return (self.after_ms / self.before_ms - 1) * 100

    @property
    def significant(self) -> bool:
        return self.verdict in ("faster", "slower")


def _index(run: RunData) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for e in run.entries:
        key = compare.match_key(e.model, e.strategy, {"batch_size": e.row.get("batch_size")}, e.strategy)
        out[key] = e  # a repeated spec: the last record wins
    return out


def samples(e: Entry) -> compare.Samples:
    """What :mod:`bench.core.compare` needs of a report entry."""
    timing = e.record.get("timing") or {}
    rounds = timing.get("rounds") or None
    return compare.Samples(latencies_s=[v / 1000 for v in e.latencies_ms], batch_size=e.batch_size,
                           rounds=rounds, run_id=e.record.get("run_id"),
                           probe_s=(e.record.get("probe") or {}).get("latencies_s") or None)


def _settings_notes(a: Entry, b: Entry) -> list[str]:
    notes = []
    sa, sb = a.record.get("settings") or {}, b.record.get("settings") or {}
    for name in COMPARED_SETTINGS:
        va, vb = sa.get(name, a.row.get(name)), sb.get(name, b.row.get(name))
        if va is None or vb is None:
            continue
        if va != vb:
            notes.append(f"{name} {va} \u2192 {vb}")
    return notes


def compare_entries(before: Entry, after: Entry) -> Change:
    """The change of one strategy between two runs."""
    change = Change(
        model=after.model,
        strategy=after.strategy,
        reference=before.run.short,
        run=after.run.short,
        verdict="not comparable",
        notes=_settings_notes(before, after),
    )
    metas = {**before.quality_meta, **after.quality_meta}
    for name, meta in metas.items():
        b, a = before.quality.get(name), after.quality.get(name)
        if b is None and a is None:
            continue
        change.quality.append(QualityChange(name, meta.label, b, a, meta.higher_is_better))
    if not (before.ok and after.ok):
        change.notes.insert(0, f"status {before.status} \u2192 {after.status}")
        return change
    if change.notes:  # settings differ: as the gate, no latency verdict across them
        change.notes.insert(0, "settings differ")
        return change
    xb, xa = before.latencies_ms_per_image, after.latencies_ms_per_image
    if not xb or not xa:
        change.notes.insert(0, "no raw latencies to compare")
        return change
    moved = compare.latency_change(samples(before), samples(after), ALPHA)
    sp = compare.speedup(samples(before), samples(after))
    change.before_ms = float(_median(xb))
    change.after_ms = float(_median(xa))
    change.ratio, change.ci_low, change.ci_high = sp.ratio, sp.ci_low, sp.ci_high
    change.p_value, change.method = sp.p_value, compare.short_method(sp.method)
    change.n_before, change.n_after = len(xb), len(xa)
    change.verdict = moved.verdict
    return change


def _control_fdr(changes: Sequence[Change]) -> None:
    """Faster/slower only for the changes that stay discoveries among all of them
    (Benjamini-Hochberg at 5%); the others become inconclusive."""

    tested = [c for c in changes if c.p_value is not None and finite(c.p_value)]
    found = stats.benjamini_hochberg([c.p_value for c in tested], ALPHA)
    for c, discovery in zip(tested, found, strict=True):
        if c.verdict in ("faster", "slower") and not discovery:
            c.verdict = "inconclusive"
            c.notes.append("not a discovery at 5% false discovery rate")


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def compare_runs(runs: Sequence[RunData]) -> list[list[Change]]:
    """For each run after the first, the change of every strategy against the first run.

    Strategies only in the reference are listed as ``missing``, those only in the later run
    as ``new``.
    """
    if len(runs) < 2:
        return []
    reference = _index(runs[0])
    out: list[list[Change]] = []
    for run in runs[1:]:
        later = _index(run)
        changes: list[Change] = []
        for key, after in later.items():
            before = reference.get(key)
            if before is None:
                changes.append(Change(after.model, after.strategy, runs[0].short, run.short, "new"))
            else:
                changes.append(compare_entries(before, after))
        for key, before in reference.items():
            if key not in later:
                changes.append(Change(before.model, before.strategy, runs[0].short, run.short, "missing"))
        _control_fdr(changes)
        out.append(changes)
    return out


__all__ = ["ALPHA", "Change", "QualityChange", "compare_entries", "compare_runs"]
