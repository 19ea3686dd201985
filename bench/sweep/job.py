"""The worker side of a sweep job: ``python -m bench.sweep.job JOB_DIR``.

``JOB_DIR/job.json`` holds the job (see :func:`bench.sweep.payload`, plus the threads and
CPUs the executor gave it). The worker imports the sweep's plugins, runs the engine
(:class:`bench.measure.engine.Engine`) on the baseline and the job's stack, interleaved in this process
(so the stack's speedup is against a baseline measured here and now, round by round), and
writes the job's one record to ``JOB_DIR/record.json`` (atomically), exit status 0. Everything it
prints goes to ``JOB_DIR/log.txt`` (the executor redirects it).

A job that dies before writing its record (a crash, a kill, a hang cut by the timeout) gets
its failed record from the executor instead, built with :func:`failure_record`.

The worker dies with its parent (Linux ``PR_SET_PDEATHSIG``): a killed sweep leaves no job
running behind it, so a resumed sweep never races an orphan.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.core.config import RunConfig, TimingConfig
from bench.core.errors import StrategyError
from bench.core.formats import sanitize
from bench.core.quality_config import QualityConfig
from bench.core.record import REFERENCE
from bench.core.record import failure_record as build
from bench.measure.engine import (  # lazy: the sweep driver imports this module and stays torch-free
    Engine,
    EngineError,
)
from bench.sweep import import_plugins

JOB_FILE = "job.json"
RECORD_FILE = "record.json"
LOG_FILE = "log.txt"
#: Environment variable holding the pid the worker must die with.
PARENT_ENV = "ACCELBENCH_JOB_PARENT_PID"

_OOM = re.compile(r"OutOfMemoryError|out of memory|can't allocate memory|MemoryError", re.I)


def job_prefix(job_id: str) -> str:
    """Where a job's files live inside the sweep folder (``jobs/<id>``)."""
    return f"jobs/{job_id}"


def sweep_block(payload: dict[str, Any]) -> dict[str, Any]:
    """The ``sweep`` field of a job's record: which sweep and job, what was asked for."""
    return {
        "name": payload.get("sweep"),
        "job_id": payload["id"],
        "group": payload.get("group"),
        "images_key": payload.get("images_key"),
        "settings": payload.get("settings"),
        "executor": payload.get("executor"),
        "host": socket.gethostname(),
    }


def failure_record(
    payload: dict[str, Any],
    error: str,
    *,
    kind: str,
    status: str = "failed",
    details: dict[str, Any] | None = None,
    log_tail: str | None = None,
) -> dict[str, Any]:
    """The record of a job that produced none itself (crashed, killed, timed out, or
    failed before measuring), in the results schema so that it loads as a row.

    ``kind`` is ``timeout``, ``crash``, ``killed``, ``oom`` or ``error``; ``details`` adds
    e.g. the time limit or the exit status to the record's ``failure`` field.
    """

    settings = payload.get("settings") or {}
    run = payload.get("run") or {}
    record = build(
        payload.get("model"), payload.get("strategy"), error, kind=kind, status=status,
        settings={**settings, "quality_images": run.get("quality_images"), "seed": run.get("seed")},
        config={"job": {k: v for k, v in payload.items() if k != "env"}},
        details=details, log_tail=log_tail,
    )
    record.sweep = sweep_block(payload)
    return record.to_dict()


def run_config(payload: dict[str, Any], job_dir: Path):
    """The :class:`bench.core.config.RunConfig` of a job: the baseline and its stack."""

    settings = payload["settings"]
    run = payload["run"]
    resolution = settings.get("resolution")
    strategies = (REFERENCE,) if payload["strategy"] == REFERENCE else (payload["strategy"],)
    return RunConfig(
        model=payload["model"],
        strategies=strategies,
        device=settings["device"],
        batch_size=settings["batch_size"],
        steps=settings.get("steps"),
        resolution=tuple(resolution) if resolution else None,
        timing=TimingConfig(**run.get("timing", {})),
        quality_images=run["quality_images"],
        seed=run["seed"],
        sample_interval_s=run["sample_interval_s"],
        out_dir=job_dir,
        trust_remote_code=run.get("trust_remote_code", False),
        allow_download=run.get("allow_download", False),
        use_cache=True,
        quality=QualityConfig(**run.get("quality", {})),
        schedule=run.get("schedule", "auto"),
        threads=payload.get("threads"),
    )


def _job_record(payload: dict[str, Any], records: list[dict[str, Any]],
                drift: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's record from the engine's: the stack's, with the in-process baseline's
    timings kept as its ``reference`` (and, as ``reference.after``, the baseline timed again
    after the stack where the run was sequential: how much the machine drifted meanwhile) and
    its file paths made relative to the sweep folder."""
    record = dict(records[-1])
    if payload["strategy"] != REFERENCE and len(records) > 1:
        ref = records[0]
        record["reference"] = {
            "strategy": ref.get("strategy"),
            "status": ref.get("status"),
            "error": ref.get("error"),
            "latencies_s": (ref.get("timing") or {}).get("latencies_s"),
            "rounds": (ref.get("timing") or {}).get("rounds"),
            "latency_ms": (ref.get("stats") or {}).get("latency_ms"),
            "measured": "in this job's process, on the same device, "
                        + ("in alternation with the strategy"
                           if (ref.get("schedule") or {}).get("name") == "interleaved"
                           else "just before the strategy"),
            "after": drift,
        }
    prefix = job_prefix(payload["id"])
    for key in ("images", "series_file"):
        if isinstance(record.get(key), str):
            record[key] = f"{prefix}/{record[key]}"
    if record.get("status") == "failed":
        record["failure"] = {"kind": "oom" if _OOM.search(str(record.get("error"))) else "error"}
    return record


def run_job(payload: dict[str, Any], job_dir: Path, log=None) -> dict[str, Any]:
    """Run one job in this process and return its record (never raises for the job's own
    errors: they become a failed record)."""

    log = log or (lambda msg: print(msg, flush=True))
    started, started_at = time.perf_counter(), time.time()
    try:
        import_plugins(payload.get("plugins", []), payload.get("sys_path", []))
        result = Engine(run_config(payload, job_dir), show_progress=False, log=log).run()
        record = _job_record(payload, result.records, result.drift)
    except (StrategyError, EngineError) as exc:  # a setting or stack the model cannot take
        record = failure_record(payload, str(exc), kind="unsupported", status="unsupported")
    except Exception as exc:  # the model did not load, the engine broke: a failed row
        error = f"{type(exc).__name__}: {exc}"
        record = failure_record(payload, error, kind="oom" if _OOM.search(error) else "error")
        record["traceback"] = traceback.format_exc()
        log(record["traceback"])
    record["sweep"] = {**sweep_block(payload), "pid": os.getpid(),
                       "wall_s": time.perf_counter() - started,
                       "started_at": started_at, "ended_at": time.time(),
                       "threads": payload.get("threads"), "cpus": payload.get("cpus")}
    return record


def write_record(job_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record.json`` atomically (temp file, fsync, rename)."""

    target = Path(job_dir) / RECORD_FILE
    fd, tmp = tempfile.mkstemp(dir=job_dir, prefix=".record.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(sanitize(record), fh, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_record(job_dir: Path) -> dict[str, Any] | None:
    """A job's ``record.json``, or None when absent or unreadable."""
    path = Path(job_dir) / RECORD_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


def _pin(payload: dict[str, Any]) -> None:
    cpus = payload.get("cpus")
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as exc:
            print(f"warning: cannot pin to CPUs {cpus}: {exc}", flush=True)
    threads = payload.get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the job in ``argv[0]`` (a job folder) and write its record."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.sweep.job JOB_DIR", file=sys.stderr)
        return 2
    _die_with_parent()
    job_dir = Path(argv[0])
    payload = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    print(f"[{datetime.now():%H:%M:%S}] job {payload['id']}: {payload['model']} "
          f"{payload['settings']} {payload['strategy']} (pid {os.getpid()})", flush=True)
    _pin(payload)
    record = run_job(payload, job_dir)
    write_record(job_dir, record)
    print(f"[{datetime.now():%H:%M:%S}] done: {record.get('status')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
