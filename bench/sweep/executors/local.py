"""Jobs as processes on this machine, ``workers`` at a time.

Each job is its own ``python -m bench.sweep.job`` process (see :mod:`bench.sweep.executors.process`):
a segfault, an out-of-memory kill or a hang (cut at the job's time limit) ends that job
only. With several workers, each worker slot gets its own CPU cores (affinity) and, for
``device = "cuda"``, its own GPU (``CUDA_VISIBLE_DEVICES``), so concurrent jobs do not
share the hardware they are timed on; on the CPU they still share memory bandwidth and
caches, so measure with one worker and use several for smoke runs or one job per GPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from bench.sweep import Job, Plan, SweepError
from bench.sweep.executors import process
from bench.sweep.executors.base import Deliver, Executor, JobDir, Outcome, Schedule


def _available_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


class LocalExecutor(Executor):
    """Run jobs as isolated processes here.

    Args:
        workers: jobs at once.
        threads: torch threads per job (None: this machine's cores / workers, at least 1).
        poll_s: how often running jobs are checked.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None, poll_s: float = 0.1) -> None:
        if workers < 1:
            raise SweepError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        cpus = _available_cpus()
        self.threads = threads or max(1, len(cpus) // workers)
        self.poll_s = poll_s
        # Pin slots to disjoint cores when there are enough of them.
        self._slot_cpus: list[list[int] | None] = [None] * workers
        if workers > 1 and len(cpus) >= workers * self.threads:
            self._slot_cpus = [cpus[i * self.threads:(i + 1) * self.threads] for i in range(workers)]
        self._gpus: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "threads": self.threads,
                "cpus": self._slot_cpus}

    def check(self, plan: Plan) -> None:
        devices = {j.settings.device for j in plan.jobs}
        cuda = {d for d in devices if d.startswith("cuda")}
        if not cuda or self.workers == 1:
            return
        if cuda != {"cuda"}:
            raise SweepError(
                f"with {self.workers} workers write device = \"cuda\" (each worker gets its own "
                f"GPU), not {sorted(cuda)}"
            )
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [
            str(i) for i in range(torch.cuda.device_count())
        ]
        if len(ids) < self.workers:
            raise SweepError(
                f"{self.workers} workers but {len(ids)} GPU(s): jobs sharing a GPU would "
                "disturb each other's timings; use at most one worker per GPU"
            )
        self._gpus = ids[: self.workers]

    def run(self, items: Sequence[tuple[Job, dict[str, Any]]], job_dir: JobDir,
            deliver: Deliver) -> None:
        payloads = {job.id: p for job, p in items}
        schedule = Schedule([job for job, _ in items])
        free = list(range(self.workers))
        running: dict[int, tuple[Job, process.Running]] = {}
        try:
            while schedule or running:
                for job in schedule.take(len(free)):
                    slot = free.pop(0)
                    cuda = self._gpus[slot] if self._gpus and job.settings.device == "cuda" else None
                    payload = {**payloads[job.id], "executor": self.name}
                    running[slot] = (job, process.start(
                        payload, job_dir(job.id), threads=self.threads,
                        cpus=self._slot_cpus[slot], cuda_visible=cuda,
                    ))
                if not running and schedule:
                    schedule.release_all()  # nothing left to wait for
                    continue
                time.sleep(self.poll_s)
                now = time.monotonic()
                for slot, (job, run) in list(running.items()):
                    if run.proc.poll() is not None:
                        record = process.collect(run)
                    elif run.overdue(now):
                        process.kill(run)
                        record = process.collect(run, timed_out=True)
                    else:
                        continue
                    del running[slot]
                    free.append(slot)
                    free.sort()
                    schedule.done(job.id)
                    deliver(Outcome(job, record))
        finally:
            for _, run in running.values():
                process.kill(run)
