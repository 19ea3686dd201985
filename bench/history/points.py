"""What a record files in the history: its points (one per metric) and the keys of its series.

A series is one (model, stack, machine, settings, metric); its key is the five parts joined
by `` | ``. The machine part names the CPU model and core count, and the GPU and its driver
where the run used one; the settings part the call settings two measurements must share to be
compared (:data:`bench.core.config.COMPARED_SETTINGS`). Metrics filed per record:

* ``latency_ms``: the median call latency (ms) with its 95% interval;
* ``speedup``: over the run's reference stack, with its interval (not for the reference);
* ``energy_j_per_image`` (J) and ``peak_memory_mb`` (MB), where measured;
* each quality metric the record carries (``psnr``, ``ssim``, ``adherence``, ``fid``, ``kid``
  with ``kid_std`` as its interval, ...), finite values only (the reference's PSNR is inf).

This module imports no torch and no database library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.core.config import COMPARED_SETTINGS
from bench.core.formats import number
from bench.core.metrics import METRICS
from bench.core.record import Record

#: Separator of a series key's parts (never inside a part: it is replaced there).
SEP = " | "
#: Quality figures that are another metric's spread, not a metric of their own.
SPREADS = {"kid_std": "kid"}
#: Standard deviations either side of a value that make its ~95% interval.
Z95 = 1.96


@dataclass(frozen=True)
class Point:
    """One metric of one record, as the history files it."""

    model: str
    stack: str
    machine: str
    settings: str
    metric: str
    value: float
    low: float | None
    high: float | None
    unit: str
    higher_is_better: bool

    @property
    def series(self) -> str:
        """The stable key ``model | stack | machine | settings | metric``."""
        return series_key(self.model, self.stack, self.machine, self.settings, self.metric)


def _part(text: Any) -> str:
    return str(text).replace("|", "/").strip()


def series_key(model: str, stack: str, machine: str, settings: str, metric: str) -> str:
    """The key of a series: its five parts joined by :data:`SEP`."""
    return SEP.join(_part(p) for p in (model, stack, machine, settings, metric))


@dataclass(frozen=True)
class Machine:
    """What a record says of the machine: CPU model, cores, GPU model and driver."""

    cpu: str | None
    cpu_count: int | None
    gpu: str | None
    driver: str | None

    @classmethod
    def from_environment(cls, env: Mapping[str, Any]) -> Machine:
        gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
        count = number(env.get("cpu_count"))
        return cls(env.get("cpu") or None, int(count) if count is not None else None,
                   gpu.get("name") or None, gpu.get("driver") or None)

    @property
    def key(self) -> str:
        """``CPU, N cores[, GPU, driver D]``: the machine part of a series key."""
        parts = [self.cpu or "unknown CPU", f"{self.cpu_count or '?'} cores"]
        if self.gpu:
            parts += [self.gpu, f"driver {self.driver or '?'}"]
        return _part(", ".join(parts))


def settings_key(settings: Mapping[str, Any]) -> str:
    """The compared settings as ``name=value`` pairs in a fixed order (unset ones left out)."""
    pairs = []
    for name in COMPARED_SETTINGS:
        value = settings.get(name)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = "x".join(str(v) for v in value)
        pairs.append(f"{name}={value}")
    return _part(", ".join(pairs)) or "-"


def _finite(value: Any) -> float | None:
    parsed = number(value)
    return parsed if parsed is not None and math.isfinite(parsed) else None


def _direction(name: str, meta: Mapping[str, Any]) -> tuple[bool, str] | None:
    declared = meta.get(name) if isinstance(meta.get(name), dict) else None
    if declared and "higher_is_better" in declared:
        return bool(declared["higher_is_better"]), str(declared.get("unit") or "")
    info = METRICS.get(name)
    return (info.higher_is_better, info.unit) if info else None


def record_points(rec: Record, machine: str | None = None) -> list[Point]:
    """The points of one record (none for a record that is not ``ok``); ``machine``: the
    machine key to file them under (default: the record's own environment's)."""
    if not rec.ok or not rec.model_name or not rec.strategy:
        return []
    base = {"model": _part(rec.model_name), "stack": _part(rec.strategy),
            "machine": machine or Machine.from_environment(rec.environment).key,
            "settings": settings_key(rec.settings)}
    out: list[Point] = []

    def add(metric: str, value: Any, low: Any, high: Any, unit: str, higher: bool) -> None:
        v = _finite(value)
        if v is not None:
            out.append(Point(**base, metric=metric, value=v, low=_finite(low), high=_finite(high),
                             unit=unit, higher_is_better=higher))

    lat = rec.latency_ms
    if lat is not None:
        add("latency_ms", lat.median, lat.ci_low, lat.ci_high, "ms", False)
    speed = rec.speedup
    if speed is not None and not rec.is_reference:
        add("speedup", speed.ratio, speed.ci_low, speed.ci_high, "x", True)
    add("energy_j_per_image", rec.energy_j_per_image, None, None, "J", False)
    add("peak_memory_mb", rec.peak_memory_mb, None, None, "MB", False)
    scores = rec.scores
    for name, value in scores.values.items():
        if name in SPREADS:
            continue
        direction = _direction(name, scores.meta)
        if direction is None:
            continue
        low = high = None
        spread = next((s for s, of in SPREADS.items() if of == name), None)
        sd = _finite(scores.values.get(spread)) if spread else None
        v = _finite(value)
        if sd is not None and v is not None:
            low, high = v - Z95 * sd, v + Z95 * sd
        add(name, value, low, high, direction[1], direction[0])
    return out


__all__ = ["SEP", "Machine", "Point", "record_points", "series_key", "settings_key"]
