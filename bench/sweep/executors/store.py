"""The sweep folder: ``results.jsonl`` (appended by the sweep process alone), one folder per
job, the resolved spec, and a lock so that two sweeps never write the same folder.

Crash safety, whatever kills the sweep process and when:

* a record is one fsynced ``write`` of one line (:func:`bench.core.results.append`); a line torn
  by a kill in the middle of it is cut off (kept aside in ``results.jsonl.torn``) before
  anything else is appended, so no record is ever glued to a broken one;
* a job writes its ``record.json`` atomically before it exits; one that finished while the
  sweep was being killed, and was not appended yet, is appended on the next run (recovered)
  rather than measured again; ``record.json`` is removed only once its line is on disk;
* the lock is an ``flock``, released by the kernel when the process dies.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from bench.core import lock, results
from bench.sweep import SweepError, latest
from bench.sweep.job import RECORD_FILE, job_prefix, read_record

LOCK_FILE = ".sweep.lock"
SPEC_FILE = "sweep.json"


class SweepStore:
    """A sweep folder, locked while open (use as a context manager)."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        self.results = self.root / results.RESULTS_FILE
        self._lock_fd: int | None = None
        self.cut_bytes = 0

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> SweepStore:
        fd = lock.acquire(self.root, LOCK_FILE, lambda holder: SweepError(
            f"another sweep (pid {holder}) is writing to {self.root}; wait for it or use "
            "another output folder"))
        self._lock_fd = fd
        self.cut_bytes = self.repair_tail()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- the results file ----------------------------------------------------------------
    def repair_tail(self) -> int:
        """Cut a torn last line (no newline: the writer was killed mid-line); return the
        number of bytes cut, which are appended to ``results.jsonl.torn``."""
        if not self.results.exists():
            return 0
        with open(self.results, "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return 0
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return 0
            # Find the last newline, reading backwards in blocks.
            pos, keep = size, 0
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                block = fh.read(step)
                i = block.rfind(b"\n")
                if i >= 0:
                    keep = pos + i + 1
                    break
            fh.seek(keep)
            torn = fh.read()
            with open(str(self.results) + ".torn", "ab") as out:
                out.write(torn + b"\n")
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        warnings.warn(
            f"{self.results}: cut an incomplete last record ({len(torn)} bytes, kept in "
            f"{self.results.name}.torn)", stacklevel=2,
        )
        return len(torn)

    def records(self) -> list[dict[str, Any]]:
        """Every record in the results file (none if there is no file yet)."""
        if not self.results.exists():
            return []
        return list(results.iter_records(self.results))

    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest record of each job id."""
        return latest(self.records())

    def append(self, record: dict[str, Any]) -> None:
        results.append(self.results, record)

    # -- job folders ---------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """A job's folder (created)."""
        path = self.root / job_prefix(job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def deliver(self, record: dict[str, Any], files: dict[str, bytes] | None = None) -> None:
        """Store a finished job: its files first, then its record line, then drop its
        ``record.json`` (so a kill at any point loses nothing and duplicates nothing)."""
        job_id = record["sweep"]["job_id"]
        folder = self.job_dir(job_id)
        for rel, data in (files or {}).items():
            target = (folder / rel).resolve()
            if folder.resolve() not in target.parents:
                raise SweepError(f"job {job_id} sent a file outside its folder: {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        self.append(record)
        (folder / RECORD_FILE).unlink(missing_ok=True)

    def recover(self, job_ids: list[str], done: dict[str, dict[str, Any]]) -> list[str]:
        """Append the ``record.json`` of jobs that finished but were never appended; drop
        those of jobs already appended. Returns the recovered ids."""
        recovered = []
        for job_id in job_ids:
            folder = self.root / job_prefix(job_id)
            if not (folder / RECORD_FILE).exists():
                continue
            record = read_record(folder)
            if job_id in done or record is None or (record.get("sweep") or {}).get("job_id") != job_id:
                (folder / RECORD_FILE).unlink(missing_ok=True)
                continue
            self.deliver(record)
            done[job_id] = record
            recovered.append(job_id)
        return recovered

    def save_spec(self, data: dict[str, Any], source: str | None = None) -> None:
        """Write the resolved sweep (``sweep.json``) atomically, and a copy of the file."""
        tmp = self.root / (SPEC_FILE + ".part")
        tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.root / SPEC_FILE)
        if source and Path(source).is_file():
            shutil.copyfile(source, self.root / "sweep.toml.part")
            os.replace(self.root / "sweep.toml.part", self.root / "sweep.toml")
