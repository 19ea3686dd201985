"""The sampler contract: a context manager that polls in the background while the timed
loop runs, then hands back a frozen result of raw series and summaries.

Polling runs on a daemon thread (the default) or in a separate process (``mode="process"``).
Either way every sample is stamped with ``time.perf_counter``, the clock the harness stamps
its iteration boundaries with; on Linux, macOS and Windows that clock is system-wide
(``CLOCK_MONOTONIC``, ``mach_absolute_time``, ``QueryPerformanceCounter``), so a child
process's stamps compare directly with the parent's (checked at start-up all the same).

Hooks, and where they run:

- ``_prepare()`` / ``_finish()``: in the measured process, before polling starts and after
  it ends (e.g. resetting and reading the kernel's peak-RSS mark).
- ``_start()`` / ``_sample()`` / ``_close()``: in the polling context (the thread, or the
  child process): open sources, read one sample, release sources.
- ``_summarize(series, window, images)``: in the measured process, on the gathered series.

Once polling stops, :meth:`Sampler.result` takes the timed window and the number of images
made in it, so energy per image and peaks *during the loop* can be derived.
"""

from __future__ import annotations

import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.core.config import SAMPLE_INTERVAL_S
from bench.measure.samplers.timeseries import (
    Span,
    count_summary,
    in_span,
    iteration_index,
    samples_per_window,
    span_bounds,
    windows_of,
)

clock = time.perf_counter

MODES = ("thread", "process")

#: Seconds a sampler process may take to start and report its first sample.
PROCESS_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SamplerResult:
    """What a sampler saw.

    Attributes:
        source: which sampler (``cpu``, ``nvml``).
        interval_s: the polling interval asked for.
        series: raw columns of equal length; ``t`` holds ``perf_counter`` timestamps (the
            harness's clock), the rest one value per sample (NaN where a reading failed).
        summary: derived figures (peaks, means, energy and how it was obtained).
        missing: field -> why it could not be read; never silently zero.
    """

    source: str
    interval_s: float
    series: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def as_dict(self, include_series: bool = False) -> dict[str, Any]:
        """The result as plain data; the raw series only when asked for."""
        data = asdict(self)
        if not include_series:
            data.pop("series")
        return data


class Sampler(ABC):
    """Polls :meth:`_sample` every ``interval_s`` seconds in the background.

    Args:
        interval_s: polling period in seconds (> 0). Samples are scheduled at a fixed
            rate; a late sample is not followed by a burst of catch-up samples.
        mode: ``thread`` (a daemon thread in this process) or ``process`` (a spawned child
            process; falls back to a thread, saying so in ``missing``, if it cannot start).
        batch_sched: run the poller under ``SCHED_BATCH`` (Linux) so that it never preempts
            the hot loop on waking; on an overloaded machine it then samples less often
            than asked (``interval_median_s`` in the summary shows by how much).
    """

    source: str = "base"
    #: Attributes that exist only in the polling context and are not sent to a child process.
    _transient: tuple[str, ...] = ()

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S, mode: str = "thread", batch_sched: bool = True) -> None:
        if not isinstance(interval_s, (int, float)) or not interval_s > 0 or math.isinf(interval_s):
            raise ValueError(f"interval_s must be a finite number > 0, got {interval_s!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.interval_s = float(interval_s)
        self.mode = mode
        self.batch_sched = batch_sched
        self._rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: Any = None
        self._conn: Any = None
        self._polled_in = "thread"
        self._cpu_s = 0.0  # CPU time the polling itself used (its own thread or process)
        #: field -> why it could not be read.
        self.missing: dict[str, str] = {}
        #: What the polling context found out about its sources (device names, methods).
        self.info: dict[str, Any] = {}

    # -- hooks -------------------------------------------------------------------------
    @abstractmethod
    def _sample(self) -> dict[str, float]:
        """Read one sample (without the timestamp)."""

    def _prepare(self) -> None:  # noqa: B027 (optional hook)
        """Hook run in the measured process before polling starts."""

    def _start(self) -> None:  # noqa: B027 (optional hook)
        """Hook run in the polling context once, before the first sample."""

    def _close(self) -> None:  # noqa: B027 (optional hook)
        """Hook run in the polling context once, after the last sample."""

    def _finish(self) -> None:  # noqa: B027 (optional hook)
        """Hook run in the measured process after polling has ended."""

    def _summarize(
        self, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        """Derive summary figures from the collected series over ``window`` (a span)."""
        return {}

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> Sampler:
        self._rows = []
        self.missing = {}
        self.info = {}
        self._cpu_s = 0.0
        self._stop.clear()
        self._prepare()
        if self.mode == "process":
            try:
                self._start_process()
                return self
            except Exception as exc:
                self.missing["sampler_process"] = (
                    f"could not poll in a separate process ({type(exc).__name__}: {exc}); "
                    "polled on a thread instead"
                )
        self._polled_in = "thread"
        try:
            self._start()
        except Exception as exc:  # sample what can be sampled; never end the run
            self.missing["sampler_start"] = f"{type(exc).__name__}: {exc}"
        self._poll_once()
        self._thread = threading.Thread(target=self._run, name=f"{self.source}-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._child is not None:
            self._stop_process()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            self._poll_once()
            self._safe_close()
        self._finish()

    # -- polling -----------------------------------------------------------------------
    def _run(self) -> None:
        self._loop(self._stop.wait)

    def _loop(self, wait: Callable[[float], bool]) -> None:
        """Poll at a fixed rate until ``wait(timeout)`` returns True."""
        self.info["sampler_sched"] = _yield_on_wakeup() if self.batch_sched else "default"
        due = clock() + self.interval_s
        while not wait(max(0.0, due - clock())):
            self._poll_once()
            due += self.interval_s
            now = clock()
            if due < now:  # fell behind: skip the missed slots rather than burst
                due = now + self.interval_s

    def _poll_once(self) -> None:
        c0 = time.thread_time()
        t0 = clock()
        try:
            row = self._sample()
        except Exception as exc:  # a sampler must never end the run
            self.missing.setdefault("sampler", f"a sample failed: {type(exc).__name__}: {exc}")
            row = {}
        t1 = clock()
        self._cpu_s += time.thread_time() - c0
        row["t"] = (t0 + t1) / 2
        row["sample_ms"] = (t1 - t0) * 1000
        self._rows.append(row)

    def _safe_close(self) -> None:
        try:
            self._close()
        except Exception as exc:
            self.missing.setdefault("sampler_close", f"{type(exc).__name__}: {exc}")

    # -- process mode ------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_stop", "_thread", "_child", "_conn", *self._transient):
            state.pop(name, None)
        state["_rows"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stop = threading.Event()
        self._thread = None
        self._child = None
        self._conn = None

    def _start_process(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
        parent_conn, child_conn = ctx.Pipe()
        before = clock()
        proc = ctx.Process(
            target=_child_main, args=(self, child_conn), name=f"{self.source}-sampler", daemon=True
        )
        proc.start()
        child_conn.close()
        if not parent_conn.poll(PROCESS_START_TIMEOUT_S):
            proc.kill()
            raise TimeoutError(f"no first sample within {PROCESS_START_TIMEOUT_S:g} s")
        try:
            message = parent_conn.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(
                f"the sampler process exited (code {proc.exitcode}) before its first sample; "
                "spawn re-imports the main module, which must be importable and guarded by "
                "`if __name__ == '__main__'`"
            ) from None
        after = clock()
        if message[0] != "ready":
            proc.join(5)
            raise RuntimeError(f"sampler process ended early: {message[2]}")
        if not before <= message[1] <= after:
            self.missing["clock"] = (
                f"the sampler process's perf_counter ({message[1]:.6f}) is not between the "
                f"parent's readings around its start ({before:.6f}, {after:.6f}): timestamps "
                "may not compare with iteration boundaries"
            )
        self._child, self._conn = proc, parent_conn
        self._polled_in = "process"

    def _stop_process(self) -> None:
        proc, conn = self._child, self._conn
        self._child = self._conn = None
        try:
            try:
                conn.send("stop")
            except OSError:
                pass  # the child ended already; its last message may still be waiting
            if not conn.poll(PROCESS_START_TIMEOUT_S):
                raise TimeoutError("no reply to stop")
            _, rows, missing, info, cpu_s = conn.recv()
            self._rows = rows
            self._cpu_s = cpu_s
            self.missing.update(missing)
            self.info.update(info)
        except Exception as exc:
            self.missing["sampler"] = (
                f"the sampler process failed (exit code {proc.exitcode}): {type(exc).__name__}: "
                f"{exc}; its samples are lost"
            )
        finally:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
            conn.close()

    # -- results -----------------------------------------------------------------------
    def result(
        self,
        window: Span | None = None,
        images: int | None = None,
        bounds: Sequence[tuple[float, float]] | None = None,
    ) -> SamplerResult:
        """The series and summaries gathered between enter and exit.

        Args:
            window: the timed loop on the ``perf_counter`` clock: one (start, end) window, or
                the windows of one stack's calls when stacks were timed in alternation; energy
                and peaks are computed over it, from the samples inside it alone (None: the
                whole sampled span).
            images: images made inside ``window``; gives joules per image and images per kWh.
            bounds: each timed iteration's (start, end); adds an ``iteration`` column (the
                iteration a sample falls in, -1 outside the timed loop).
        """
        if images is not None and images < 0:
            raise ValueError(f"images must be >= 0, got {images}")
        keys = sorted({k for row in self._rows for k in row})
        series = {k: [float(row.get(k, float("nan"))) for row in self._rows] for k in keys}
        ts = series.get("t", [])
        windows: list[tuple[float, float]] | None = None
        if window is not None:
            windows = windows_of(window)
            if any(b < a for a, b in windows):
                raise ValueError(f"window ends before it starts: {window}")
            span: Any = windows[0] if len(windows) == 1 else windows
        elif ts:
            span = (ts[0], ts[-1])
            windows = [span]
        else:
            span = None
        if bounds is not None:
            series["iteration"] = [float(i) for i in iteration_index(ts, list(bounds))]
        costs = sorted(series.get("sample_ms", []))
        gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False))
        first, last = (ts[0], ts[-1]) if ts else (0.0, 0.0)
        sampled = last - first
        summary: dict[str, Any] = {
            "samples": len(ts),
            "mode": self._polled_in,
            "window": list(span_bounds(windows)) if windows else None,
            "windows": len(windows) if windows else 0,
            "samples_in_window": sum(1 for t in ts if windows and in_span(t, windows)),
            # min / median / max over the windows, and how many hold none
            "samples_per_window": (
                count_summary(samples_per_window(ts, windows)) if windows else None
            ),
            "sample_ms_median": costs[len(costs) // 2] if costs else None,
            # the interval achieved (longer than asked on an overloaded machine)
            "interval_median_s": gaps[len(gaps) // 2] if gaps else None,
            # CPU seconds the polling used per second sampled: its direct cost to the machine.
            "sampler_cpu_fraction": self._cpu_s / sampled if sampled > 0 else None,
            "sampler_sched": self.info.get("sampler_sched"),
        }
        summary.update(self._summarize(series, span, images))
        missing = dict(self.missing)
        if window is not None and not summary["samples_in_window"]:
            shortest = min(b - a for a, b in windows)
            missing["window_samples"] = (
                f"no sample inside any of the {len(windows)} window(s) (shortest {shortest:.3f} s, "
                f"polled every {self.interval_s:g} s): their peaks, means and energy are "
                "unavailable, never taken from the run's other samples"
            )
        return SamplerResult(
            source=self.source,
            interval_s=self.interval_s,
            series=series,
            summary=summary,
            missing=missing,
        )


def _yield_on_wakeup() -> str:
    """Put the calling (polling) thread under ``SCHED_BATCH`` where the OS has it.

    A waking batch task does not preempt the running one: each poll then waits for a free
    core or the end of the measured thread's time slice instead of taking the CPU from the
    hot loop. On a busy machine, wake-up preemption, not the sampler's own CPU time, is
    what a sampler costs the loop. Returns the policy in force, for the record.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # 0: this thread (Linux)
        return "SCHED_BATCH"
    except (AttributeError, OSError) as exc:
        return f"default ({type(exc).__name__}: {exc})"


def _child_main(sampler: Sampler, conn: Any) -> None:
    """Body of the sampler process: poll until told to stop, then send everything back."""
    sampler._polled_in = "process"
    started = False
    try:
        sampler._start()
        sampler._poll_once()
        started = True
        conn.send(("ready", sampler._rows[-1]["t"]))
        sampler._loop(conn.poll)
        conn.recv()
        sampler._poll_once()
    except BaseException as exc:
        sampler.missing["sampler"] = f"the sampler process failed: {type(exc).__name__}: {exc}"
    finally:
        sampler._safe_close()
        try:
            if started:
                conn.send(("done", sampler._rows, sampler.missing, sampler.info, sampler._cpu_s))
            else:
                conn.send(("failed", None, sampler.missing.get("sampler", "unknown"), None, 0.0))
        except OSError:
            pass  # the measured process is gone: nobody to tell
        finally:
            conn.close()
