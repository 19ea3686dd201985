"""What every executor shares: the outcome of a job, the dependency schedule, the interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.sweep import Job, Plan


@dataclass
class Outcome:
    """A finished job: its record, and files to put in its folder of the sweep (paths
    relative to that folder; empty when the job wrote them there itself)."""

    job: Job
    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.record.get("status", "?"))


#: Called once per finished job, in the sweep process, in completion order.
Deliver = Callable[[Outcome], None]
#: Where a job's folder is in the sweep (created by the caller).
JobDir = Callable[[str], Path]


class Schedule:
    """Jobs in order, each released once the job producing its baseline images is done.

    A producer that is not part of this run (recorded by an earlier run) counts as done.
    A failed producer releases its dependents too: they then make the images themselves.
    """

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.pending = list(jobs)
        ids = {j.id for j in jobs}
        self.blocked_by = {j.id: j.after for j in jobs if j.after in ids}
        self.finished: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.pending)

    def take(self, limit: int | None = None) -> list[Job]:
        """Up to ``limit`` jobs whose producer is done (removed from the pending list)."""
        out = []
        for job in list(self.pending):
            if limit is not None and len(out) >= limit:
                break
            dep = self.blocked_by.get(job.id)
            if dep is None or dep in self.finished:
                out.append(job)
                self.pending.remove(job)
        return out

    def done(self, job_id: str) -> None:
        self.finished.add(job_id)

    def release_all(self) -> None:
        """Unblock everything (nothing is running that could unblock it)."""
        self.blocked_by.clear()


class Executor(ABC):
    """Runs jobs, each isolated from the sweep process, and hands back their records."""

    name: ClassVar[str]

    def check(self, plan: Plan) -> None:  # noqa: B027 - optional hook
        """Refuse, with the reason, a plan these resources cannot run (before any job)."""

    @property
    def checks_devices_locally(self) -> bool:
        """Whether the jobs' devices must exist on this machine (not so for a cluster)."""
        return True

    def describe(self) -> dict[str, Any]:
        """How jobs run, saved with the sweep."""
        return {"executor": self.name}

    @abstractmethod
    def run(self, items: Sequence[tuple[Job, dict[str, Any]]], job_dir: JobDir,
            deliver: Deliver) -> None:
        """Run every (job, payload), honouring ``job.after``; call ``deliver`` for each one
        as it finishes. Kill whatever is still running if interrupted."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor holds (a Ray connection...); called once at the end."""
