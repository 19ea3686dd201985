"""Comparing runs: per strategy, did it get faster or slower, and is the change significant?

The first run is the reference; every later run is compared with it, strategy by strategy
(matched on model and strategy spec). Latency is compared per image, on the raw timed calls
of both runs: the ratio of medians with a bootstrap 95% interval, and a two-sided
Mann-Whitney U test (via :func:`bench.stats.speedup`, which uses scipy). A change is called
faster or slower only when p < 0.05; otherwise it is "no significant change", whatever the
medians say. Quality changes are reported with their direction from each metric's
declaration (there are no per-image quality samples in the record to test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench import stats
from reports.data import Entry, RunData, finite

ALPHA = 0.05


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
    def better(self) -> bool | None:
        """True if the later run is better, False if worse, None if equal or unknown."""
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


def _index(run: RunData) -> dict[tuple[str, str], Entry]:
    out: dict[tuple[str, str], Entry] = {}
    for e in run.entries:
        out[(e.model, e.strategy)] = e  # a repeated spec: the last record wins
    return out


def _settings_notes(a: Entry, b: Entry) -> list[str]:
    notes = []
    for name in ("device", "batch_size", "steps"):
        va, vb = a.row.get(name), b.row.get(name)
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
    xb, xa = before.latencies_ms_per_image, after.latencies_ms_per_image
    if not xb or not xa:
        change.notes.insert(0, "no raw latencies to compare")
        return change
    sp = stats.speedup(xb, xa, confidence=1 - ALPHA)
    change.before_ms = float(_median(xb))
    change.after_ms = float(_median(xa))
    change.ratio, change.ci_low, change.ci_high = sp.ratio, sp.ci_low, sp.ci_high
    change.p_value = sp.p_value
    change.n_before, change.n_after = len(xb), len(xa)
    if sp.p_value < ALPHA and sp.ratio != 1:
        change.verdict = "faster" if sp.ratio > 1 else "slower"
    else:
        change.verdict = "no significant change"
    return change


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
        out.append(changes)
    return out


__all__ = ["ALPHA", "Change", "QualityChange", "compare_entries", "compare_runs"]
