"""One job in its own process (``python -m bench.sweep.job``), and what to record when it dies.

The job runs in a new session (its own process group), so a timeout kills it *and* any
process it started (compile workers, data loaders). Its output goes to ``log.txt`` in its
folder; a job that exits without writing ``record.json`` gets a failed record saying how it
ended (signal, exit status, timeout with the limit) and the end of its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sweep.job import JOB_FILE, LOG_FILE, PARENT_ENV, RECORD_FILE, failure_record, read_record

#: Lines of a job's log kept in its failed record.
LOG_TAIL_LINES = 25

_SIGNALS = {
    "SIGSEGV": "crashed with SIGSEGV (segmentation fault)",
    "SIGBUS": "crashed with SIGBUS (bus error)",
    "SIGABRT": "aborted (SIGABRT: a failed assertion or an abort in native code)",
    "SIGFPE": "crashed with SIGFPE (arithmetic error in native code)",
    "SIGILL": "crashed with SIGILL (an instruction this CPU does not have)",
    "SIGKILL": "killed by SIGKILL: most often the kernel's out-of-memory killer "
               "(see `dmesg`), or someone killed it",
}


@dataclass
class Running:
    """A started job process."""

    payload: dict[str, Any]
    job_dir: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    #: Wall-clock start (epoch seconds), recorded in failed records.
    started_at: float = field(default_factory=time.time)

    @property
    def limit(self) -> float | None:
        return self.payload.get("timeout_s")

    def overdue(self, now: float | None = None) -> bool:
        limit = self.limit
        return limit is not None and ((now or time.monotonic()) - self.started) > limit


def start(payload: dict[str, Any], job_dir: Path, *, threads: int,
          cpus: list[int] | None = None, cuda_visible: str | None = None) -> Running:
    """Write the job file and start ``python -m bench.sweep.job`` on it."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / RECORD_FILE).unlink(missing_ok=True)
    (job_dir / "results.jsonl").unlink(missing_ok=True)  # the runner's copy from a retried run
    payload = {**payload, "threads": threads, "cpus": cpus}
    (job_dir / JOB_FILE).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    env = os.environ.copy()
    env.update(payload.get("env") or {})
    env.update({
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        PARENT_ENV: str(os.getpid()),
    })
    # The sweep's folders go last: they are for plugins, never to shadow installed packages.
    paths = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    paths += [p for p in payload.get("sys_path") or [] if Path(p).is_dir()]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    if cuda_visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible
    with open(job_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sweep.job", str(job_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
    return Running(payload, job_dir, proc)


def kill(running: Running) -> None:
    """SIGKILL the job's whole process group and reap it."""
    try:
        os.killpg(running.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        running.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): stop waiting
        pass


def _reap_group(running: Running) -> None:
    """Kill what the job left behind in its process group after it exited."""
    try:
        os.killpg(running.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(job_dir: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a job's log ('' if none)."""
    path = Path(job_dir) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def describe_exit(returncode: int) -> tuple[str, str]:
    """(failure kind, words) for a job process that ended without a record."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        kind = "killed" if name == "SIGKILL" else "crash"
        return kind, _SIGNALS.get(name, f"killed by {name}")
    if returncode == 0:
        return "crash", "exited (status 0) without writing its record"
    return "crash", f"exited with status {returncode} before writing its record"


def collect(running: Running, *, timed_out: bool = False) -> dict[str, Any]:
    """The job's record: the one it wrote, or a failed one saying how it ended."""
    _reap_group(running)
    record = read_record(running.job_dir)
    if record is None:
        record = _failed(running, timed_out)
        record["sweep"].update(pid=running.proc.pid, started_at=running.started_at,
                               ended_at=time.time())
    return record


def _failed(running: Running, timed_out: bool) -> dict[str, Any]:
    """The failed record of a job that ended without one: timeout, signal or exit status."""
    payload = running.payload
    tail = log_tail(running.job_dir)
    rc = running.proc.returncode
    elapsed = time.monotonic() - running.started
    if timed_out:
        limit = running.limit
        return failure_record(
            payload,
            f"timed out: still running after the job time limit of {limit:g} s; killed "
            "(raise [jobs] timeout_s or --timeout if it needs longer)",
            kind="timeout",
            details={"timeout_s": limit, "elapsed_s": round(elapsed, 3)},
            log_tail=tail,
        )
    kind, words = describe_exit(rc)
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    error = f"job process {words}" + (f"; last output: {last[:200]}" if last else "")
    details: dict[str, Any] = {"returncode": rc, "elapsed_s": round(elapsed, 3)}
    if rc is not None and rc < 0:
        details["signal"] = signal.Signals(-rc).name if -rc in signal.valid_signals() else -rc
    return failure_record(payload, error, kind=kind, details=details, log_tail=tail)


def run_isolated(payload: dict[str, Any], job_dir: Path, *, threads: int,
                 poll_s: float = 0.2) -> dict[str, Any]:
    """Run one job in its own process and wait for it (with its time limit); its record."""
    running = start(payload, job_dir, threads=threads)
    try:
        while running.proc.poll() is None:
            if running.overdue():
                kill(running)
                return collect(running, timed_out=True)
            time.sleep(poll_s)
    except BaseException:
        kill(running)
        raise
    return collect(running)
