"""What a report reads: run directories, their records, and the files records point to.

Everything goes through :mod:`bench.core.results` (the results schema); nothing here imports
torch. One :class:`Entry` is one record (a model and strategy stack measured in one run),
with its raw samples pulled out and typed so plots and tables need not dig into dicts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import results
from bench.core.compare import verdicts
from bench.core.formats import number
from bench.core.record import REFERENCE, Record
from bench.measure.samplers.series import read_frame as read_series

#: Cold-cost fields shown first, in this order; any others a strategy records follow.
COLD_ORDER = ("load_s", "apply_s", "first_call_s", "compile_s", "training_s", "break_even_images")
COLD_LABELS = {
    "load_s": "load s",
    "apply_s": "apply s",
    "first_call_s": "first call s",
    "compile_s": "compile s",
    "training_s": "training s",
    "break_even_images": "break-even images",
}


def finite(value: float | None) -> bool:
    """True for a real, finite number."""
    return value is not None and math.isfinite(value)


@dataclass(frozen=True)
class MetricMeta:
    """A quality metric's declaration as saved in records (``quality_meta``)."""

    name: str
    higher_is_better: bool
    unit: str = ""
    description: str = ""

    @property
    def label(self) -> str:
        """Axis and column label: name and unit."""
        name = self.name.upper() if len(self.name) <= 5 and "_" not in self.name else self.name.replace("_", " ")
        return f"{name} ({self.unit})" if self.unit else name

    @property
    def arrow(self) -> str:
        return "\u2191" if self.higher_is_better else "\u2193"


@dataclass
class Entry:
    """One record, typed. ``key`` is unique in a report and safe in HTML ids."""

    key: str
    run: RunData
    record: dict[str, Any]
    model: str
    strategy: str
    status: str
    error: str | None
    row: dict[str, Any]
    latencies_ms: list[float] = field(default_factory=list)
    step_times_ms: list[list[float]] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    quality_meta: dict[str, MetricMeta] = field(default_factory=dict)
    cold: dict[str, float] = field(default_factory=dict)
    #: The record read through :class:`bench.core.record.Record` (typed blocks).
    typed: Record | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_baseline(self) -> bool:
        return self.strategy == REFERENCE

    @property
    def batch_size(self) -> int:
        return int(self.row.get("batch_size") or 1)

    @property
    def label(self) -> str:
        """The strategy, with the run's short name when the report spans several runs."""
        return self.strategy if self.run.single else f"{self.strategy} [{self.run.short}]"

    @property
    def ms_per_image(self) -> float | None:
        return number(self.row.get("ms_per_image"))

    @property
    def latencies_ms_per_image(self) -> list[float]:
        return [v / self.batch_size for v in self.latencies_ms]

    @property
    def energy_j_per_image(self) -> float | None:
        return number(self.row.get("energy_j_per_image"))

    @property
    def speedup(self) -> dict[str, Any]:
        return ((self.typed.stats if self.typed else self.record.get("stats")) or {}).get("speedup") or {}

    @property
    def images_path(self) -> Path | None:
        rel = self.record.get("images")
        if not rel or not isinstance(rel, str):
            return None
        return self.run.path / rel

    @property
    def image_prompts(self) -> list[str]:
        prompts = self.record.get("image_prompts")
        return [str(p) for p in prompts] if isinstance(prompts, list) else []

    @property
    def image_seeds(self) -> list[int]:
        seeds = self.record.get("image_seeds")
        if isinstance(seeds, list):
            return [int(s) for s in seeds if number(s) is not None]
        return []

    @property
    def noise_floor(self) -> dict[str, dict[str, float]]:
        """Metric -> {mean, std} of what real images score (``quality_noise_floor``)."""
        raw = self.record.get("quality_noise_floor")
        out: dict[str, dict[str, float]] = {}
        if isinstance(raw, dict):
            for name, v in raw.items():
                if isinstance(v, dict) and finite(number(v.get("mean"))):
                    out[str(name)] = {"mean": number(v["mean"]), "std": number(v.get("std")) or 0.0}
        return out

    @property
    def unavailable_metrics(self) -> dict[str, str]:
        """Metric -> why it was not computed (``quality_details.unavailable``)."""
        raw = (self.record.get("quality_details") or {}).get("unavailable")
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    @property
    def series_path(self) -> Path | None:
        rel = self.record.get("series_file")
        if not rel or not isinstance(rel, str):
            return None
        return self.run.path / rel

    def series(self):
        """The sampler's raw time series as a DataFrame (column ``t`` on the harness's
        ``perf_counter`` clock), from ``series_file`` or an inline ``sampler.series``;
        None when the record has none or the file cannot be read."""
        import pandas as pd

        path = self.series_path
        if path is not None:
            frame = read_series(path)
            if frame is not None:
                return frame
        inline = (self.record.get("sampler") or {}).get("series")
        if isinstance(inline, dict) and inline.get("t"):
            try:
                frame = pd.DataFrame({k: [number(v) for v in vals] for k, vals in inline.items()})
            except ValueError:  # ragged columns
                return None
            return frame if "t" in frame.columns else None
        return None


@dataclass
class RunData:
    """One run directory and its records."""

    path: Path
    index: int
    single: bool
    entries: list[Entry] = field(default_factory=list)

    @property
    def results_file(self) -> Path:
        return results.results_path(self.path)

    @property
    def short(self) -> str:
        return f"run {self.index + 1}"

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def environment(self) -> dict[str, Any]:
        for e in self.entries:
            env = e.record.get("environment")
            if isinstance(env, dict) and env:
                return env
        return {}

    @property
    def config(self) -> dict[str, Any]:
        for e in self.entries:
            cfg = e.record.get("config")
            if isinstance(cfg, dict) and cfg:
                return cfg
        return {}

    @property
    def run_ids(self) -> list[str]:
        return sorted({str(e.record.get("run_id")) for e in self.entries if e.record.get("run_id")})

    @property
    def created(self) -> str | None:
        stamps = sorted(str(e.record["created"]) for e in self.entries if e.record.get("created"))
        return stamps[0] if stamps else None


def _entry(run: RunData, position: int, record: dict[str, Any]) -> Entry:
    rec = Record.from_dict(record)
    row = results.flatten(rec)
    calls = rec.calls
    quality = {str(k): v for k, v in ((k, number(v)) for k, v in (rec.quality or {}).items()) if v is not None}
    meta: dict[str, MetricMeta] = {}
    for name, m in rec.scores.meta.items():
        if isinstance(m, dict) and m.get("higher_is_better") in (True, False):
            meta[str(name)] = MetricMeta(
                name=str(name),
                higher_is_better=bool(m["higher_is_better"]),
                unit=str(m.get("unit") or ""),
                description=str(m.get("description") or ""),
            )
    return Entry(
        key=f"r{run.index}e{position}",
        run=run,
        record=record,
        model=str(row.get("model") or "?"),
        strategy=str(rec.strategy or "?"),
        status=str(rec.status or "ok"),
        error=None if rec.error is None else str(rec.error),
        row=row,
        latencies_ms=[v * 1000 for v in calls.latencies_s if finite(v)],
        step_times_ms=[[d * 1000 for d in it if finite(d)] for it in calls.step_times_s],
        quality=quality,
        quality_meta=meta,
        cold=rec.cold_costs,
        typed=rec,
    )


def load_runs(paths: Sequence[str | os.PathLike]) -> list[RunData]:
    """Read each run directory (or results file) through :func:`bench.core.results.iter_records`."""
    if not paths:
        raise ValueError("no run directories given")
    runs: list[RunData] = []
    for i, p in enumerate(paths):
        path = Path(p)
        run_dir = path if path.is_dir() else path.parent
        run = RunData(path=run_dir, index=i, single=len(paths) == 1)
        for position, record in enumerate(results.iter_records(path)):
            run.entries.append(_entry(run, position, record))
        runs.append(run)
    return runs


def metric_order(entries: Iterable[Entry]) -> list[MetricMeta]:
    """Every metric that has a declared direction, in order of first appearance; the
    ``<name>_std`` companions of other metrics are folded into them, not listed."""
    seen: dict[str, MetricMeta] = {}
    for e in entries:
        for name, m in e.quality_meta.items():
            seen.setdefault(name, m)
    names = set(seen)
    return [m for name, m in seen.items() if not (name.endswith("_std") and name[:-4] in names)]


def undeclared_metrics(entries: Iterable[Entry]) -> list[str]:
    """Quality values without a declared direction (shown in tables, never plotted)."""
    entries = list(entries)
    declared = {n for e in entries for n in e.quality_meta}
    out: list[str] = []
    for e in entries:
        for name in e.quality:
            if name in declared or name in out:
                continue
            if name.endswith("_std") and name[:-4] in declared:
                continue
            out.append(name)
    return out


def cold_fields(entries: Iterable[Entry]) -> list[str]:
    """Cold-cost fields present in any entry: the known ones in order, then the rest."""
    present: list[str] = []
    for e in entries:
        for k in e.cold:
            if k not in present:
                present.append(k)
    known = [k for k in COLD_ORDER if k in present]
    return known + sorted(k for k in present if k not in COLD_ORDER)


def speedup_verdicts(entries: Sequence[Entry]) -> dict[int, str]:
    """Each non-baseline entry's verdict (by ``id``), the comparisons of each run taken
    together with the false discovery rate controlled (:func:`bench.core.compare.verdicts`)."""

    out: dict[int, str] = {}
    runs: dict[int, list[Entry]] = {}
    for e in entries:
        if e.ok and not e.is_baseline and e.speedup:
            runs.setdefault(id(e.run), []).append(e)
    for group in runs.values():
        for e, word in zip(group, verdicts([e.speedup for e in group]), strict=True):
            if word:
                out[id(e)] = word
    return out


__all__ = [
    "speedup_verdicts",
    "COLD_LABELS",
    "Entry",
    "MetricMeta",
    "RunData",
    "cold_fields",
    "finite",
    "load_runs",
    "metric_order",
    "number",
    "read_series",
    "undeclared_metrics",
]
