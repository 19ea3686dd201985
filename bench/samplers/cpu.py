"""CPU-side sampling with psutil: the process's resident memory and CPU utilisation."""

from __future__ import annotations

from typing import Any

import psutil

from bench.samplers.base import Sampler


class CPUSampler(Sampler):
    """Samples process RSS (MB) and process CPU utilisation (% of one core)."""

    source = "cpu"

    def __init__(self, interval_s: float = 0.05) -> None:
        super().__init__(interval_s)
        self._proc = psutil.Process()

    def _start(self) -> None:
        self._proc.cpu_percent(None)  # prime: the first reading is always 0

    def _sample(self) -> dict[str, float]:
        return {
            "rss_mb": self._proc.memory_info().rss / 2**20,
            "cpu_percent": self._proc.cpu_percent(None),
        }

    def _summarize(self, series: dict[str, list[float]]) -> dict[str, Any]:
        rss = series.get("rss_mb", [])
        cpu = series.get("cpu_percent", [])[1:]  # the first covers no interval
        out: dict[str, Any] = {"samples": len(rss)}
        if rss:
            out["peak_rss_mb"] = max(rss)
        if cpu:
            out["cpu_percent_mean"] = sum(cpu) / len(cpu)
        return out
