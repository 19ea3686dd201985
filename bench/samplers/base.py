"""The sampler contract: a context manager that polls in the background while the timed
loop runs, then hands back a frozen result of raw series and summaries."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

clock = time.perf_counter


@dataclass(frozen=True)
class SamplerResult:
    """What a sampler saw.

    Attributes:
        source: which sampler (``cpu``, ``nvml``).
        interval_s: the polling interval asked for.
        series: raw columns of equal length; ``t`` holds ``perf_counter`` timestamps (the
            harness's clock), the rest one value per sample.
        summary: derived figures (peaks, means, energy and how it was obtained).
        missing: field -> why it could not be read; never silently zero.
    """

    source: str
    interval_s: float
    series: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def as_dict(self, include_series: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not include_series:
            data.pop("series")
        return data


class Sampler(ABC):
    """Polls :meth:`_sample` every ``interval_s`` seconds on a daemon thread."""

    source: str = "base"

    def __init__(self, interval_s: float = 0.05) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.missing: dict[str, str] = {}

    @abstractmethod
    def _sample(self) -> dict[str, float]:
        """Read one sample (without the timestamp)."""

    def _start(self) -> None:
        """Hook run once before polling starts."""

    def _summarize(self, series: dict[str, list[float]]) -> dict[str, Any]:
        """Derive summary figures from the collected series."""
        return {}

    def __enter__(self) -> Sampler:
        self._start()
        self._rows.clear()
        self._stop.clear()
        self._poll_once()
        self._thread = threading.Thread(target=self._run, name=f"{self.source}-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._poll_once()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll_once()

    def _poll_once(self) -> None:
        t = clock()
        row = self._sample()
        row["t"] = t
        self._rows.append(row)

    def result(self) -> SamplerResult:
        """The series and summaries gathered between enter and exit."""
        keys = sorted({k for row in self._rows for k in row})
        series = {k: [float(row.get(k, float("nan"))) for row in self._rows] for k in keys}
        return SamplerResult(
            source=self.source,
            interval_s=self.interval_s,
            series=series,
            summary=self._summarize(series),
            missing=dict(self.missing),
        )
