"""CPU-side sampling: the process's resident memory and CPU time, the machine's CPU
utilisation, and package energy from RAPL where the kernel lets us read it. On Linux the
``/proc`` files are kept open and re-read directly (cheapest for the timed loop); elsewhere
psutil reads the same figures.

Besides the sampled RSS, the kernel's own peak-RSS mark (``VmHWM``) is reset when sampling
starts (by writing ``5`` to ``/proc/<pid>/clear_refs``) and read when it ends, so a peak
shorter than the polling interval is not missed. That reset also resets the process's
``ru_maxrss``; where it is not allowed the record says so.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from bench.core.config import SAMPLE_INTERVAL_S
from bench.measure.samplers import energy as _energy
from bench.measure.samplers import rapl as _rapl
from bench.measure.samplers.base import Sampler, clock
from bench.measure.samplers.timeseries import Span, in_window, mean, window_values

MB = 2**20


def _read_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        return None
    return None


class _ProcFiles:
    """Linux fast path: ``/proc`` files kept open and re-read with ``pread`` (a few
    microseconds and one GIL release each, against ~120 us for the same through psutil)."""

    def __init__(self, pid: int) -> None:
        self._fds = [
            os.open(f"/proc/{pid}/statm", os.O_RDONLY),
            os.open(f"/proc/{pid}/stat", os.O_RDONLY),
            os.open("/proc/stat", os.O_RDONLY),
        ]
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._tick = os.sysconf("SC_CLK_TCK")
        self.rss_bytes()
        self.cpu_s()
        self.busy_total()

    def rss_bytes(self) -> int:
        return int(os.pread(self._fds[0], 256, 0).split()[1]) * self._page

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process."""
        data = os.pread(self._fds[1], 4096, 0)
        fields = data[data.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / self._tick

    def busy_total(self) -> tuple[float, float]:
        """Busy and total CPU time of the machine (clock ticks, all cores)."""
        values = [int(v) for v in os.pread(self._fds[2], 512, 0).split(b"\n", 1)[0].split()[1:9]]
        total = sum(values)
        return total - values[3] - values[4], total

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class CPUSampler(Sampler):
    """Samples process RSS (MiB), process CPU utilisation (% of one core), the machine's CPU
    utilisation (% of all cores) and, where readable, RAPL package energy (J).

    Args:
        interval_s: polling period in seconds.
        mode: ``thread`` or ``process`` (see :class:`~bench.measure.samplers.base.Sampler`).
        pid: the process to watch (default: this one).
        rapl_root: the powercap directory RAPL zones are looked for in.
        batch_sched: poll under ``SCHED_BATCH`` (see :class:`~bench.measure.samplers.base.Sampler`).
    """

    source = "cpu"
    _transient = ("_proc", "_psutil", "_files")

    def __init__(
        self,
        interval_s: float = SAMPLE_INTERVAL_S,
        mode: str = "thread",
        pid: int | None = None,
        rapl_root: str | os.PathLike = _rapl.DEFAULT_ROOT,
        batch_sched: bool = True,
    ) -> None:
        super().__init__(interval_s, mode=mode, batch_sched=batch_sched)
        self.pid = pid if pid is not None else os.getpid()
        self.rapl_root = Path(rapl_root)
        self._rapl: _rapl.RAPLReader | None = None
        self._last_cpu_times: tuple[float, float] | None = None
        self._last_proc_cpu: tuple[float, float] | None = None
        self._files: _ProcFiles | None = None
        self._hwm_mb: float | None = None
        self._hwm_reset = False

    # -- measured process --------------------------------------------------------------
    def _prepare(self) -> None:
        self._hwm_mb = None
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError as exc:
            self._hwm_reset = False
            self.missing["rss_hwm"] = f"could not reset the kernel's peak-RSS mark: {exc}"

    def _finish(self) -> None:
        if self._hwm_reset:
            self._hwm_mb = _read_hwm_mb(self.pid)
            if self._hwm_mb is None:
                self.missing["rss_hwm"] = f"/proc/{self.pid}/status has no readable VmHWM"

    # -- polling context ---------------------------------------------------------------
    def _start(self) -> None:
        self._files = None
        try:
            self._files = _ProcFiles(self.pid)
        except (OSError, ValueError, IndexError):
            import psutil

            self._psutil = psutil
            self._proc = psutil.Process(self.pid)
        self._last_proc_cpu = (self._proc_cpu_s(), clock())
        self._last_cpu_times = self._busy_total()
        self._rapl = _rapl.RAPLReader(self.rapl_root)
        reason = self._rapl.open()
        if reason:
            self._rapl = None
            self.missing["cpu_energy"] = reason
        else:
            self.info["rapl"] = {"zones": [z.name for z in self._rapl.zones], "scope": _rapl.SCOPE}

    def _busy_total(self) -> tuple[float, float]:
        if self._files is not None:
            return self._files.busy_total()
        times = self._psutil.cpu_times()
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        idle = times.idle + getattr(times, "iowait", 0.0)
        return total - idle, total

    def _proc_cpu_s(self) -> float:
        if self._files is not None:
            return self._files.cpu_s()
        times = self._proc.cpu_times()
        return times.user + times.system

    def _sample(self) -> dict[str, float]:
        rss = self._files.rss_bytes() if self._files is not None else self._proc.memory_info().rss
        cpu_s, now = self._proc_cpu_s(), clock()
        last_cpu_s, last_t = self._last_proc_cpu
        self._last_proc_cpu = (cpu_s, now)
        row = {
            "rss_mb": rss / MB,
            # % of one core since the previous sample, as psutil's cpu_percent
            "cpu_percent": 100.0 * (cpu_s - last_cpu_s) / (now - last_t) if now > last_t else math.nan,
        }
        busy, total = self._busy_total()
        if self._last_cpu_times is not None and total > self._last_cpu_times[1]:
            row["sys_cpu_percent"] = (
                100.0 * (busy - self._last_cpu_times[0]) / (total - self._last_cpu_times[1])
            )
        self._last_cpu_times = (busy, total)
        if self._rapl is not None:
            value = self._rapl.read()
            if math.isnan(value) and self._rapl.error:
                self.missing.setdefault("cpu_energy", f"RAPL read failed: {self._rapl.error}")
            row["rapl_energy_j"] = value
        return row

    def _close(self) -> None:
        if self._files is not None:
            self._files.close()
            self._files = None
        if self._rapl is not None:
            self.info.setdefault("rapl", {})["wraps"] = self._rapl.wraps

    # -- summaries ---------------------------------------------------------------------
    def _cpu_summary(
        self, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        rss = window_values(series, "rss_mb", window)
        out["peak_rss_mb"] = max(rss) if rss else None  # None: no sample inside the windows
        if self._hwm_mb is not None:
            out["rss_hwm_mb"] = self._hwm_mb
        if "rapl" in self.info:
            out["rapl"] = self.info["rapl"]
        cpu = series.get("cpu_percent", [])[1:]  # the first covers no interval
        cpu_in = in_window(series.get("t", [])[1:], cpu, window) if cpu else []
        out["cpu_percent_mean"] = mean(cpu_in)
        sys_cpu = window_values(series, "sys_cpu_percent", window)
        out["sys_cpu_percent_mean"] = mean(sys_cpu)
        if window is not None:
            if "rapl_energy_j" in series:
                est = _energy.estimate(
                    series["t"],
                    window,
                    counter=series["rapl_energy_j"],
                    counter_name="rapl-package-counter",
                    min_window_s=0.0,  # RAPL updates about every millisecond
                )
            else:
                est = _energy.EnergyEstimate(
                    None, "unavailable", self.missing.get("cpu_energy", "no RAPL reader")
                )
            out["cpu_energy"] = {**est.summary(window, images), "scope": _rapl.SCOPE}
        return out

    def _summarize(
        self, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        """The CPU's figures, then the devices' (:meth:`_device_summary`), then the run's
        energy over ``window`` at the top level (:meth:`_energy_summary`)."""
        out = self._cpu_summary(series, window, images)
        self.missing.pop("energy", None)
        out.update(self._device_summary(series, window, images))
        if window is None:
            self.missing["energy"] = "no window: energy needs the timed loop's start and end"
            return out
        out.update(self._energy_summary(out, window, images))
        return out

    def _device_summary(
        self, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        """Figures of the devices besides the CPU (none here)."""
        return {}

    def _energy_summary(self, out: dict[str, Any], window: Span, images: int | None) -> dict[str, Any]:
        """The top-level energy keys (:data:`_PRIMARY` and ``energy_scope``) from the summary
        so far, ``out``: here the RAPL package energy."""
        cpu_energy = out["cpu_energy"]
        top = {k: cpu_energy[k] for k in _PRIMARY if k in cpu_energy}
        top["energy_scope"] = cpu_energy["scope"]
        if cpu_energy["energy_j"] is None:
            self.missing["energy"] = cpu_energy["reason"]
        return top


#: The energy keys every sampler's summary carries at the top level.
_PRIMARY = ("energy_j", "window_s", "images", "avg_power_w", "j_per_image", "images_per_kwh", "method")
