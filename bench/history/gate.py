"""The gate that reads history: each point of a new run judged against its series.

For every point the new run would file (:func:`bench.history.points.record_points`), the
store's points of the same series (the new run not among them) go to
:func:`bench.history.judge.judge`, which compares the new value with what the series' recent
segment (since its last change point) predicts. Exit status: 1 when a series regressed or
crept, 2 when no point of the run has any history to be judged against, else 0.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import HistoryError
from bench.core.formats import fmt, sanitize
from bench.core.record import Record
from bench.core.results import iter_records, results_path
from bench.history.points import Point, record_points, series_key
from bench.history.store import HistoryStore

#: Metrics whose threshold is ``--max-slowdown``; every other (quality) takes ``quality``.
SPEED_METRICS = ("latency_ms", "speedup", "relative_latency", "energy_j_per_image",
                 "peak_memory_mb")
EXIT_PASS, EXIT_REGRESSION, EXIT_NOTHING = 0, 1, 2
HISTORY_VERDICT_SCHEMA = "accelbench.history-verdict/1"


@dataclass(frozen=True)
class HistoryRules:
    """What the history gate counts as a regression.

    Attributes:
        threshold: how much slower (a fraction, as ``--max-slowdown``) than the segment's
            centre a latency, speedup, energy or memory point must be, besides lying outside
            the prediction (:meth:`threshold_of`).
        quality_threshold: the same for quality metrics.
        creep: flag a drift worse than this fraction over the last ``creep_window`` points
            that no single step reached (None: off).
        creep_window: points the creep is measured over.
        metrics: only these metrics (empty: every metric of the run).
        any_machine: judge against the series' points of every machine (for ratios that
            hold across machines: speedup, quality), not only this run's machine.
    """

    threshold: float = 0.10
    quality_threshold: float = 0.02
    creep: float | None = None
    creep_window: int = 8
    metrics: tuple[str, ...] = ()
    any_machine: bool = False

    def threshold_of(self, metric: str, higher_is_better: bool) -> float:
        """The judge's threshold for ``metric`` (a fraction of the centre, in the worse
        direction). ``threshold`` means "slower by that fraction" as in the baseline gate, so
        for a higher-is-better speed figure (speedup) it becomes a drop of
        ``1 - 1 / (1 + threshold)`` (30% slower: a speedup 23% lower)."""
        if metric not in SPEED_METRICS:
            return self.quality_threshold
        return 1 - 1 / (1 + self.threshold) if higher_is_better else self.threshold


@dataclass
class SeriesVerdict:
    """One series judged: the new point, how many history points, the judgement."""

    series: str
    value: float
    history_points: int
    verdict: str
    reason: str
    expected: tuple[float, float, float] = (math.nan, math.nan, math.nan)


@dataclass
class HistoryVerdict:
    """Every series of the run judged, and the exit status they add up to."""

    series: list[SeriesVerdict]
    rules: HistoryRules
    store: str
    sources: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[SeriesVerdict]:
        return [s for s in self.series if s.verdict in ("regression", "creep")]

    @property
    def exit_code(self) -> int:
        if self.failing:
            return EXIT_REGRESSION
        if not any(s.history_points for s in self.series):
            return EXIT_NOTHING
        return EXIT_PASS

    def as_dict(self) -> dict[str, Any]:
        return {"schema": HISTORY_VERDICT_SCHEMA, "exit_code": self.exit_code,
                "store": self.store, "current": self.sources, "rules": asdict(self.rules),
                "series": [asdict(s) for s in self.series]}


def _run_points(paths: Iterable[str | os.PathLike], metrics: Sequence[str]) -> list[Point]:
    out: list[Point] = []
    for path in paths:
        target = results_path(path)
        if not target.is_file():
            raise HistoryError(f"{path}: not a run directory or results.jsonl")
        points = [p for data in iter_records(target) for p in record_points(Record.from_dict(data))]
        out += [p for p in points if not metrics or p.metric in metrics]
    return out


def _history(store: HistoryStore, point: Point, any_machine: bool):
    if not any_machine:
        return store.points(series=point.series)
    frame = store.points(model=point.model, stack=point.stack, settings=point.settings,
                         metric=point.metric)
    return frame.sort_values(["commit_date", "added_at"], kind="stable").reset_index(drop=True)


def gate_history(store: HistoryStore, current: Sequence[str | os.PathLike],
                 rules: HistoryRules) -> HistoryVerdict:
    """Judge every point of the ``current`` run(s) against its series in ``store``."""
    from bench.history.judge import judge

    points = _run_points(current, rules.metrics)
    own = {store.run_id_of(c) for c in current} - {None}  # filed already: not its own history
    if not points:
        raise HistoryError("the run has no measured point to judge"
                           + (f" among metrics {list(rules.metrics)}" if rules.metrics else ""))
    verdicts = []
    for p in points:
        history = _history(store, p, rules.any_machine)
        if own and not history.empty:
            history = history[~history["run"].isin(own)].reset_index(drop=True)
        key = p.series if not rules.any_machine else series_key(p.model, p.stack, "any machine",
                                                                 p.settings, p.metric)
        if history.empty:
            verdicts.append(SeriesVerdict(key, p.value, 0, "insufficient", "no history"))
            continue
        j = judge(history, p.value, p.low, p.high, higher_is_better=p.higher_is_better,
                  threshold=rules.threshold_of(p.metric, p.higher_is_better), creep=rules.creep,
                  creep_window=rules.creep_window)
        verdicts.append(SeriesVerdict(key, p.value, len(history), j.verdict, j.reason,
                                      tuple(float(x) for x in j.expected)))
    return HistoryVerdict(verdicts, rules, store.shown, [str(c) for c in current])


def format_history(verdict: HistoryVerdict) -> str:
    """One line per series (``verdict  value  expected [low-high]  series: reason``) and a
    last line with the outcome."""
    lines = []
    for s in verdict.series:
        centre, low, high = s.expected
        lines.append(f"{s.verdict:<12} {fmt(s.value, '.4g'):>9}  expected {fmt(centre, '.4g')} "
                     f"[{fmt(low, '.4g')}-{fmt(high, '.4g')}] ({s.history_points} pts)  "
                     f"{s.series}: {s.reason}")
    outcome = {EXIT_PASS: "pass", EXIT_REGRESSION: f"{len(verdict.failing)} regression(s)",
               EXIT_NOTHING: "nothing to compare (no series of the run has history)"}
    lines.append(f"history gate: {outcome[verdict.exit_code]} against {verdict.store}")
    return "\n".join(lines)


def write_history_verdict(verdict: HistoryVerdict, path: str | os.PathLike) -> Path:
    """Write the verdict as JSON; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(sanitize(verdict.as_dict()), indent=1, default=str))
    return target


__all__ = ["HISTORY_VERDICT_SCHEMA", "SPEED_METRICS", "HistoryRules", "HistoryVerdict",
           "SeriesVerdict", "format_history", "gate_history", "write_history_verdict"]
