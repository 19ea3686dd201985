"""Sweep jobs as Ray tasks on a real local Ray instance with two worker CPUs: the same
records as the local executor, crash isolation included, and the CLI joining a running
cluster by its address."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from bench import sweep  # noqa: E402
from bench.sweep.executors.driver import run_plan  # noqa: E402
from bench.sweep.executors.local import LocalExecutor  # noqa: E402
from bench.sweep.executors.ray_executor import RayExecutor  # noqa: E402
from tests.bench.test_executors import lines, write_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STRATEGIES = ["steps:n=1", "test-oom-kill"]


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance on this machine with 2 CPUs (two jobs at once), shut down after."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 2**20)
    print(f"ray started in {time.perf_counter() - started:.1f} s")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def both(ray_address, tmp_path_factory):
    """The same sweep run by the local executor and by Ray."""
    folder = tmp_path_factory.mktemp("ray")
    path = write_sweep(folder, "same", STRATEGIES)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACCELBENCH_CACHE", str(folder / "cache"))
        for name, executor in (("local", LocalExecutor(workers=2, threads=1)),
                               ("ray", RayExecutor(threads=1))):
            plan = sweep.validate(sweep.load(path, out_dir=folder / name),
                                  check_devices=executor.checks_devices_locally)
            started = time.perf_counter()
            result = run_plan(plan, executor)
            print(f"{name}: {len(result.ran)} jobs in {time.perf_counter() - started:.1f} s")
            out[name] = (plan, result)
    assert ray.is_initialized()  # the executor did not stop a Ray instance it did not start
    return folder, path, out


def test_ray_produces_the_records_the_local_executor_does(both):
    folder, _, out = both
    (plan_l, local), (plan_r, remote) = out["local"], out["ray"]
    assert [j.id for j in plan_l.jobs] == [j.id for j in plan_r.jobs]
    assert sorted(remote.ran) == sorted(j.id for j in plan_r.jobs)
    for job in plan_l.jobs:
        a, b = local.records[job.id], remote.records[job.id]
        assert (a["strategy"], a["status"], a["settings"]) == (b["strategy"], b["status"], b["settings"])
        assert a["sweep"]["executor"] == "local" and b["sweep"]["executor"] == "ray"
        assert a.get("failure") == b.get("failure") or a["failure"]["kind"] == b["failure"]["kind"]
        if a["status"] != "ok":
            continue
        assert a["model"]["params"] == b["model"]["params"]
        assert a["model"]["call_args"] == b["model"]["call_args"]
        assert len(a["timing"]["latencies_s"]) == len(b["timing"]["latencies_s"]) == 2
        for metric in ("psnr", "ssim", "adherence"):
            qa, qb = float(a["quality"][metric]), float(b["quality"][metric])  # "inf" is a str
            assert qa == pytest.approx(qb, rel=1e-4), metric
        assert ("speedup" in a["stats"]) == ("speedup" in b["stats"])
        # The files came back from the worker into the same layout.
        assert (folder / "ray" / b["images"]).is_file()
        assert (folder / "ray" / b["series_file"]).exists()
    killed = [r for r in remote.records.values() if r["strategy"] == "test-oom-kill"][0]
    assert killed["failure"]["kind"] == "killed" and killed["failure"]["signal"] == "SIGKILL"
    assert "out-of-memory killer" in killed["error"]  # only the job died, not the Ray worker
    assert len(lines(folder / "ray" / "results.jsonl")) == len(plan_r.jobs)


def test_two_jobs_ran_at_once_on_two_workers(both):
    _, _, out = both
    plan, remote = out["ray"]
    a, b = [remote.records[j.id]["sweep"] for j in plan.jobs if j.after]  # released together
    assert a["pid"] != b["pid"]
    assert max(a["started_at"], b["started_at"]) < min(a["ended_at"], b["ended_at"])  # overlap


@pytest.mark.slow
def test_cli_joins_a_running_cluster_by_address(both, ray_address):
    folder, path, _ = both
    extended = path.with_name("more.toml")
    extended.write_text(path.read_text().replace(
        json.dumps(STRATEGIES), json.dumps([*STRATEGIES, "scheduler:name=unipc"])))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELBENCH_CACHE": str(folder / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "sweep", str(extended), "-o", str(folder / "ray"),
         "--address", ray_address, "--quiet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: the killed job's record is a failure
    assert "1 to run" in proc.stderr and "on ray" in proc.stderr
    records = lines(folder / "ray" / "results.jsonl")
    new = [r for r in records if r["strategy"] == "scheduler:name=unipc"]
    assert len(new) == 1 and new[0]["status"] == "ok" and new[0]["sweep"]["executor"] == "ray"
    assert len(records) == 4
