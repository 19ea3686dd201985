"""Where sweep jobs run: processes on this machine, or Ray tasks on a cluster.

Every executor runs each job isolated in its own ``python -m bench.sweep.job`` process (on
whichever node), with the job's time limit, and hands the record back to the sweep
process, which alone appends to the results store (:mod:`bench.sweep.executors.store`). A job
that crashes, is killed (out of memory) or hangs past its limit becomes a failed record
saying how it ended; the sweep goes on. See :mod:`bench.sweep` for what a job is.

* :class:`~bench.sweep.executors.local.LocalExecutor`: ``workers`` processes at a time here.
* :class:`~bench.sweep.executors.ray_executor.RayExecutor`: Ray tasks (``ray`` imported lazily).
"""

from __future__ import annotations

from typing import Any

from bench.sweep.executors.base import Executor, Outcome, Schedule
from bench.sweep.executors.local import LocalExecutor

EXECUTORS = ("local", "ray")


def make_executor(name: str, **options: Any) -> Executor:
    """An executor by name: ``local`` (workers, threads) or ``ray`` (address, threads)."""
    if name == "local":
        return LocalExecutor(workers=options.get("workers") or 1, threads=options.get("threads"))
    if name == "ray":
        from bench.sweep.executors.ray_executor import (
            RayExecutor,  # lazy: Ray is an optional dependency
        )

        return RayExecutor(address=options.get("address"), threads=options.get("threads") or 1,
                           init_kwargs=options.get("init_kwargs"),
                           verbose=bool(options.get("verbose")))
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "Outcome", "Schedule", "make_executor"]
