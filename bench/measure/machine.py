"""What the machine was doing while we measured: other work competing for the cores, and
whether every stack of a run fits in memory at once.

Oversubscription is the one failure no schedule can save: measured on a 2-core machine,
torch at its default threads (one per core) with two other busy processes turned a 0.75 s
call into a 45 s one (its worker threads spin against busy cores). The engine reads the load
before the run and, from the CPU sampler's series, the cores other processes kept busy during
the timed calls; the record keeps both and the summary warns with the remedy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.measure.samplers.timeseries import in_span, windows_of

#: Cores of slack before a run counts as oversubscribed (measurement noise of the counters).
SLACK_CORES = 0.5
#: Memory kept free when deciding whether all stacks fit at once, on top of the estimate.
HEADROOM_BYTES = 1 << 30
#: What the stacks add over the shared model (their rewritten weights) is estimated at this
#: multiple of the bytes counted, for allocator slack and transient copies.
ADDED_MARGIN = 1.15


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class LoadReport:
    """The machine's load around a measurement.

    Attributes:
        cores: cores this process may use.
        machine_cores: cores of the machine (the CPU counters cover all of them).
        torch_threads: torch's intra-op threads during the run.
        loadavg_start: 1-minute load average when the run started (None where unknown).
        loadavg_end: the same when the timed calls ended.
        other_cores: cores other processes kept busy during the timed calls (mean), from the
            CPU sampler; None when it was not sampled.
        oversubscribed: other work plus torch's threads wanted more cores than there are.
        warning: what to do about it, in words (None when all is well).
    """

    cores: int
    machine_cores: int
    torch_threads: int
    loadavg_start: float | None = None
    loadavg_end: float | None = None
    other_cores: float | None = None
    oversubscribed: bool = False
    warning: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _loadavg() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def start(torch_threads: int) -> LoadReport:
    """The load when a run starts."""
    return LoadReport(
        cores=usable_cores(),
        machine_cores=os.cpu_count() or 1,
        torch_threads=int(torch_threads),
        loadavg_start=_loadavg(),
    )


def other_cores(series: dict[str, Sequence[float]], machine_cores: int,
                windows: Sequence[tuple[float, float]] | None = None) -> float | None:
    """Mean cores busy with other processes while this one ran, from the CPU sampler's
    ``sys_cpu_percent`` (all cores) and ``cpu_percent`` (this process, % of one core)."""

    ts = list(series.get("t") or [])
    total, mine = series.get("sys_cpu_percent"), series.get("cpu_percent")
    if not ts or total is None or mine is None:
        return None
    spans = windows_of(windows) if windows else None
    values = []
    for t, a, b in list(zip(ts, total, mine, strict=True))[1:]:  # the first covers no interval
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        if spans is not None and not in_span(t, spans):
            continue
        values.append(max(0.0, a / 100 * machine_cores - b / 100))
    return sum(values) / len(values) if values else None


def finish(report: LoadReport, busy_elsewhere: float | None) -> LoadReport:
    """Complete ``report`` with the load during the timed calls and judge it."""
    report.loadavg_end = _loadavg()
    report.other_cores = busy_elsewhere
    want = report.torch_threads + (busy_elsewhere or 0.0)
    if busy_elsewhere is None and report.loadavg_start is not None:
        # Not sampled (e.g. a worker process): fall back on the load average.
        want = report.torch_threads + max(0.0, report.loadavg_start - report.torch_threads)
    if want > report.cores + SLACK_CORES:
        report.oversubscribed = True
        other = busy_elsewhere if busy_elsewhere is not None else report.loadavg_start
        free = max(1, math.floor(report.cores - (other or 0.0)))
        remedy = ("Stop the other work, or measure with --threads "
                  f"{free}." if free < report.torch_threads else
                  "Stop the other work and measure again; latencies here are slowed and noisy.")
        report.warning = (
            f"other processes kept {other:.1f} of {report.cores} cores busy while torch ran "
            f"{report.torch_threads} thread(s): calls were slowed and noisy (torch's threads "
            f"spin against busy cores; it can cost 10-60x). {remedy}"
        )
    return report


def free_bytes(device: str) -> int | None:
    """Memory free for more model copies: on CUDA the device's, else the host's."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no reading: the caller falls back to sequential
        return None


def fits_at_once(model_size: int, added: int, stacks: int, free: int | None) -> tuple[bool, str]:
    """Whether ``stacks`` stacks fit in ``free`` bytes at once when they share a loaded model
    of ``model_size`` bytes (already resident, so not counted against ``free``) and add
    ``added`` bytes of weights of their own, with a margin; and the reasoning in words."""
    need = int(added * ADDED_MARGIN) + HEADROOM_BYTES
    gib = 1 << 30
    if free is None:
        return False, "free memory could not be read"
    words = (f"{stacks} stacks share the loaded {model_size / gib:.2f} GiB model and add about "
             f"{added / gib:.2f} GiB of weights of their own: {need / gib:.1f} GiB with margin; "
             f"{free / gib:.1f} GiB free")
    return need <= free, words


__all__ = [
    "LoadReport", "finish", "fits_at_once", "free_bytes", "other_cores", "start",
    "usable_cores",
]
