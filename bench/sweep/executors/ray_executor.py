"""Jobs as Ray tasks: one machine or many, results gathered into the same store.

Each job is a Ray task that runs the job exactly as the local executor does, in its own
``python -m bench.sweep.job`` process on the worker node (so a crash or a hang kills that process,
never the Ray worker), in a temporary folder there. The task returns the record and the
job's files (image grid, sampled series, log); the sweep process writes them into the sweep
folder and appends the record, so the store is the same whichever executor ran the jobs and
the nodes need no shared filesystem.

Resources: ``num_cpus`` = the job's threads; ``num_gpus=1`` for CUDA jobs (Ray sets
``CUDA_VISIBLE_DEVICES``, so write ``device = "cuda"``). Devices are checked against the
cluster's resources, not against the machine the sweep runs on.

Every node needs accelbench installed (and the sweep's plugins importable); baseline images
are cached per node unless ``ACCELBENCH_CACHE`` names a folder all nodes share (the
``ACCELBENCH_*`` variables of the sweep process are passed to every job).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.sweep import Job, Plan, SweepError
from bench.sweep.executors import process
from bench.sweep.executors.base import Deliver, Executor, JobDir, Outcome, Schedule
from bench.sweep.job import JOB_FILE, RECORD_FILE, failure_record

#: Files of a job's folder bigger than this are not shipped back (bytes).
MAX_FILE_BYTES = 64 * 2**20
#: Seconds to wait for a cluster's address to answer before saying it does not.
CONNECT_TIMEOUT_S = 5.0
START_A_CLUSTER = ("start one with `ray start --head` (then --address auto), or drop --address "
                   "to run Ray on this machine")


def cluster_address(address: str) -> tuple[str, int]:
    """The (host, port) behind a user's ``--address``: ``auto`` (the cluster this machine
    knows of: ``$RAY_ADDRESS`` or the last ``ray start``), ``host:port`` or
    ``ray://host:port``. Raises :class:`SweepError` in one line when there is none."""
    target = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            target = None
        if not target:
            raise SweepError(f"--address auto: no running Ray cluster found on this machine; {START_A_CLUSTER}")
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SweepError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    return host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in one line, within ``timeout`` seconds, when nothing answers at ``address``."""
    host, port = cluster_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise SweepError(f"no Ray cluster answers at {address!r} ({host}:{port}: {why}); "
                         f"{START_A_CLUSTER}") from None


def _ray_job(payload: dict[str, Any], threads: int) -> dict[str, Any]:
    """The Ray task: run the job isolated in a temp folder; return its record and files."""

    tmp = Path(tempfile.mkdtemp(prefix=f"accelbench-{payload['id']}-"))
    try:
        record = process.run_isolated(payload, tmp, threads=threads)
        files = {}
        for path in sorted(tmp.rglob("*")):
            rel = path.relative_to(tmp).as_posix()
            if path.is_file() and rel not in (JOB_FILE, RECORD_FILE) \
                    and path.stat().st_size <= MAX_FILE_BYTES:
                files[rel] = path.read_bytes()
        return {"record": record, "files": files}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayExecutor(Executor):
    """Dispatch jobs as Ray tasks.

    Args:
        address: a running cluster (``auto``, ``ray://host:10001``, ``host:6379``); None
            connects to ``$RAY_ADDRESS`` if set, else starts a Ray instance on this machine
            (stopped at the end).
        threads: CPUs (and torch threads) per job.
        init_kwargs: more arguments of ``ray.init`` when this executor starts Ray.
        verbose: let Ray's own log lines through (by default only errors reach the terminal).
    """

    name = "ray"

    def __init__(self, address: str | None = None, threads: int = 1,
                 init_kwargs: dict[str, Any] | None = None, poll_s: float = 0.5,
                 verbose: bool = False) -> None:
        if threads < 1:
            raise SweepError(f"threads must be >= 1, got {threads}")
        self.address = address
        self.verbose = verbose
        self.threads = threads
        self.init_kwargs = init_kwargs or {}
        self.poll_s = poll_s
        self._started = False

    @property
    def checks_devices_locally(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.address, "threads": self.threads}

    def _connect(self):
        try:
            import ray
        except ImportError:
            raise SweepError(
                "--executor ray needs Ray: pip install 'accelbench[distributed]' "
                "(or pip install 'ray[default]')"
            ) from None
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if not self.verbose:
                os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
            if self.address:
                check_reachable(self.address)
            kwargs = {"include_dashboard": False, "log_to_driver": self.verbose,
                      "logging_level": logging.INFO if self.verbose else logging.ERROR,
                      **self.init_kwargs}
            if self.address:
                kwargs.pop("num_cpus", None)
                kwargs.pop("num_gpus", None)
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                where = f"at {self.address!r}" if self.address else "on this machine"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SweepError(f"cannot start or reach Ray {where}: {first}; {START_A_CLUSTER}") from None
            self._started = True
        return ray

    def check(self, plan: Plan) -> None:
        ray = self._connect()
        resources = ray.cluster_resources()
        cpus = resources.get("CPU", 0)
        if cpus < self.threads:
            raise SweepError(f"the Ray cluster has {cpus:g} CPUs; a job asks for {self.threads}")
        devices = {j.settings.device for j in plan.jobs}
        if any(d.startswith("cuda") for d in devices):
            if resources.get("GPU", 0) < 1:
                raise SweepError("the sweep has CUDA jobs but the Ray cluster has no GPU")
            if devices & {d for d in devices if d.startswith("cuda:")}:
                raise SweepError('on Ray write device = "cuda": each job gets one GPU of its own')
        if "mps" in devices:
            raise SweepError("Ray does not schedule MPS devices; run mps sweeps with the local executor")

    def run(self, items: Sequence[tuple[Job, dict[str, Any]]], job_dir: JobDir,
            deliver: Deliver) -> None:
        ray = self._connect()
        task = ray.remote(_ray_job)
        payloads = {job.id: p for job, p in items}
        schedule = Schedule([job for job, _ in items])
        running: dict[Any, Job] = {}
        try:
            while schedule or running:
                for job in schedule.take():
                    gpus = 1 if job.settings.device.startswith("cuda") else 0
                    ref = task.options(
                        num_cpus=self.threads, num_gpus=gpus, max_retries=0,
                        name=f"accelbench-job-{job.id}",
                    ).remote({**payloads[job.id], "executor": self.name}, self.threads)
                    running[ref] = job
                if not running:
                    schedule.release_all()
                    continue
                ready, _ = ray.wait(list(running), num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    job = running.pop(ref)
                    try:
                        result = ray.get(ref)
                        outcome = Outcome(job, result["record"], result["files"])
                    except Exception as exc:  # the task itself failed (node lost...)

                        outcome = Outcome(job, failure_record(
                            {**payloads[job.id], "executor": self.name},
                            f"Ray task failed: {type(exc).__name__}: {exc}", kind="crash",
                        ))
                    schedule.done(job.id)
                    deliver(outcome)
        finally:
            for ref in running:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass

    def close(self) -> None:
        """Stop the Ray instance if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
