"""Sweep jobs in their own processes: real crashes, out-of-memory errors, hangs, a SIGKILLed
sweep resumed, and the files that must survive all of it.

The failing strategies come from the ``tests.support.crashy`` plugin (imported in each job through
the sweep's ``plugins``), so production code carries no test hooks.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import sweep
from bench.core import results
from bench.sweep.executors.driver import pending, run_plan
from bench.sweep.executors.local import LocalExecutor
from bench.sweep.executors.store import SweepStore
from bench.sweep.job import RECORD_FILE, write_record

REPO = Path(__file__).resolve().parents[2]

TINY = """
name = "{name}"
plugins = ["tests.support.crashy"]
models = ["digits-unet"]
strategies = {strategies}
[settings]
batch_size = 1
steps = 2
resolution = 16
[timing]
warmup = 0
iterations = 2
min_seconds = 0
[quality]
images = {images}
noise_floor_seeds = 0
[jobs]
timeout_s = {timeout}
workers = {workers}
"""


def write_sweep(folder: Path, name: str, strategies, *, images=2, timeout=600, workers=2) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(TINY.format(
        name=name, strategies=json.dumps(list(strategies)), images=images, timeout=timeout,
        workers=workers,
    )))
    return path


def job_processes(marker: str) -> list:
    """Live ``bench.sweep.job`` processes whose command line mentions ``marker``."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "bench.sweep.job" in cmd and marker in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def lines(path: Path) -> list[dict]:
    """Every line of a results file, each of which must be a whole JSON record."""
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# ---------------------------------------------------------------------------------------
# One sweep with every kind of failure (module scope: it is the expensive part)
# ---------------------------------------------------------------------------------------
FAILING = ["test-exit", "test-segfault", "test-oom"]


@pytest.fixture(scope="module")
def crash_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    path = write_sweep(folder, "crash", ["steps:n=1", *FAILING])
    with pytest.MonkeyPatch.context() as mp:  # a fresh cache: who generates the images shows
        mp.setenv("ACCELBENCH_CACHE", str(folder / "cache"))
        plan = sweep.validate(sweep.load(path, out_dir=folder / "out"))
        started = time.perf_counter()
        result = run_plan(plan, LocalExecutor(workers=2, threads=1))
        seconds = time.perf_counter() - started
    print(f"crash sweep: {len(plan.jobs)} jobs in {seconds:.1f} s")
    by_strategy = {r["strategy"]: r for r in result.records.values()}
    return plan, result, by_strategy, folder / "out"


def test_every_job_has_a_record_and_the_sweep_went_on(crash_sweep):
    plan, result, rec, out = crash_sweep
    assert sorted(result.ran) == sorted(j.id for j in plan.jobs)
    assert rec["baseline"]["status"] == "ok" and rec["steps:n=1"]["status"] == "ok"
    assert all(rec[name]["status"] == "failed" for name in FAILING)
    assert len(lines(out / "results.jsonl")) == len(plan.jobs)
    df = results.load(out)
    assert sorted(df.strategy) == sorted(["baseline", "steps:n=1", *FAILING])
    assert (df.status == "failed").sum() == 3 and df.error.notna().sum() == 3


def test_process_exit_is_a_crash_with_its_status(crash_sweep):
    r = crash_sweep[2]["test-exit"]
    assert r["failure"]["kind"] == "crash" and r["failure"]["returncode"] == 3
    assert "exited with status 3" in r["error"]
    assert "test-exit: failing now" in r["log_tail"]


def test_segfault_is_a_crash_with_its_signal(crash_sweep):
    r = crash_sweep[2]["test-segfault"]
    assert r["failure"] == {**r["failure"], "kind": "crash", "signal": "SIGSEGV", "returncode": -11}
    assert "segmentation fault" in r["error"]


def test_out_of_memory_error_is_recorded_by_the_job(crash_sweep):
    r = crash_sweep[2]["test-oom"]
    assert r["failure"]["kind"] == "oom"
    assert "can't allocate memory" in r["error"]
    # The job wrote it itself: the model had loaded, the error has its traceback.
    assert r["model"]["params"] > 0
    assert "crashy.py" in r["traceback"]


def test_exit_statuses_are_described():
    """How a job that left no record ended (SIGKILL by the OOM killer is run for real in
    tests/test_ray_executor.py)."""
    from bench.sweep.executors.process import describe_exit

    assert describe_exit(-9) == ("killed", describe_exit(-9)[1])
    assert "out-of-memory killer" in describe_exit(-9)[1]
    assert describe_exit(-11) == ("crash", "crashed with SIGSEGV (segmentation fault)")
    assert "SIGABRT" in describe_exit(-6)[1]
    assert describe_exit(3) == ("crash", "exited with status 3 before writing its record")
    assert "without writing its record" in describe_exit(0)[1]


def test_speedup_is_against_a_baseline_timed_in_the_same_job(crash_sweep):
    from bench.core import stats

    _, _, rec, _ = crash_sweep
    r, base = rec["steps:n=1"], rec["baseline"]
    ref = r["reference"]
    assert ref["status"] == "ok" and len(ref["latencies_s"]) == 2
    # Timed in alternation, so paired round by round; two rounds give no 95% interval.
    pairs = stats.paired_log_ratios(ref["latencies_s"], ref["rounds"], r["timing"]["latencies_s"],
                                    r["timing"]["rounds"])
    expected = stats.paired_speedup(pairs).ratio
    assert r["stats"]["speedup"]["ratio"] == pytest.approx(expected)
    assert r["stats"]["speedup"]["verdict"] == "inconclusive"
    assert r["sweep"]["pid"] != base["sweep"]["pid"]  # its own process, not the baseline job's
    # Timed in alternation with the stack, round by round (no drift bracket needed).
    assert ref["rounds"] == r["timing"]["rounds"] == [0, 1] and ref["after"] is None
    assert "in alternation" in ref["measured"]
    assert r["sweep"]["host"] == base["sweep"]["host"]
    assert r["sweep"]["group"] == base["sweep"]["group"]
    assert r["settings"]["steps"] == 1 and base["settings"]["steps"] == 2
    assert r["settings"]["resolution"] == base["settings"]["resolution"] == [16, 16]


def test_baseline_images_are_generated_once_and_shared(crash_sweep):
    plan, _, rec, out = crash_sweep
    logs = [(out / "jobs" / j.id / "log.txt").read_text() for j in plan.jobs]
    assert sum("baseline images: generating" in t for t in logs) == 1
    assert sum("baseline images: from cache" in t for t in logs) == len(plan.jobs) - 1
    assert "baseline images: generating" in logs[0]  # the producer ran first
    assert rec["steps:n=1"]["quality"]["psnr"] < 100  # scored against the shared images
    for r in (rec["baseline"], rec["steps:n=1"]):
        assert (out / r["images"]).is_file()  # paths are relative to the sweep folder
        assert (out / r["series_file"]).exists()


def test_resume_skips_every_recorded_job(crash_sweep):
    plan, _, _, out = crash_sweep
    before = (out / "results.jsonl").read_bytes()
    again = run_plan(plan, LocalExecutor(workers=2, threads=1))
    assert again.ran == [] and sorted(again.skipped) == sorted(j.id for j in plan.jobs)
    assert (out / "results.jsonl").read_bytes() == before
    # --retry-failed would run exactly the failed ones.
    done = SweepStore(out).latest()
    assert {j.strategy for j in pending(plan, done, retry_failed=True)} == set(FAILING)


# ---------------------------------------------------------------------------------------
# Hangs
# ---------------------------------------------------------------------------------------
def _single_job(tmp_path, strategy, timeout):
    path = write_sweep(tmp_path, "hang", [strategy], images=0, timeout=timeout, workers=1)
    plan = sweep.validate(sweep.load(path, out_dir=tmp_path / "out"))
    job = [j for j in plan.jobs if j.strategy == strategy][0]
    return plan, job, sweep.payload(plan.spec, job)


def _run_alone(plan, job, payload, tmp_path):
    outcomes = []
    store_dir = tmp_path / "out"

    def job_dir(job_id):
        (store_dir / "jobs" / job_id).mkdir(parents=True, exist_ok=True)
        return store_dir / "jobs" / job_id

    started = time.perf_counter()
    LocalExecutor(workers=1, threads=1).run([(job, payload)], job_dir, outcomes.append)
    return outcomes[0].record, time.perf_counter() - started, job_dir(job.id)


def test_a_job_past_its_time_limit_is_killed_with_its_group(tmp_path):
    plan, job, payload = _single_job(tmp_path, "test-hang", timeout=4)
    record, seconds, folder = _run_alone(plan, job, payload, tmp_path)
    assert record["status"] == "failed"
    assert record["failure"]["kind"] == "timeout" and record["failure"]["timeout_s"] == 4
    assert "time limit of 4 s" in record["error"]
    assert 4 <= seconds < 4 + 35
    assert record["failure"]["elapsed_s"] >= 4
    assert job_processes(str(folder)) == []  # nothing left running


@pytest.mark.slow
def test_a_hang_inside_a_strategy_is_cut_at_the_limit(tmp_path):
    """The same, with a limit long enough for the job to reach the hanging strategy."""
    plan, job, payload = _single_job(tmp_path, "test-hang", timeout=60)
    record, seconds, folder = _run_alone(plan, job, payload, tmp_path)
    assert record["failure"]["kind"] == "timeout"
    assert "test-hang: failing now" in record["log_tail"]
    assert job_processes(str(folder)) == []


# ---------------------------------------------------------------------------------------
# SIGKILL the sweep itself, then resume
# ---------------------------------------------------------------------------------------
def test_sigkill_mid_sweep_then_resume_loses_and_duplicates_nothing(tmp_path):
    path = write_sweep(tmp_path, "kill", ["steps:n=1"], workers=1)
    out = tmp_path / "out"
    plan = sweep.validate(sweep.load(path, out_dir=out))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "sweep", str(path), "-o", str(out), "--quiet"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Wait for the first record, then for the second job's process to be running.
        second = plan.jobs[1]
        log = out / "jobs" / second.id / "log.txt"
        deadline = time.monotonic() + 300
        while not (log.exists() and "(pid " in log.read_text()):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "the second job never started"
            time.sleep(0.05)
        job_pid = int(log.read_text().split("(pid ", 1)[1].split(")", 1)[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The running job dies with the sweep (no orphan to race the resumed sweep).
    import psutil

    deadline = time.monotonic() + 20
    while psutil.pid_exists(job_pid) and psutil.Process(job_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the job outlived the killed sweep"
        time.sleep(0.1)
    recorded = lines(out / "results.jsonl")
    assert [r["sweep"]["job_id"] for r in recorded] == [plan.jobs[0].id]

    result = run_plan(plan, LocalExecutor(workers=1, threads=1))
    assert result.ran == [second.id] and result.skipped == [plan.jobs[0].id]
    recorded = lines(out / "results.jsonl")
    ids = [r["sweep"]["job_id"] for r in recorded]
    assert sorted(ids) == sorted(j.id for j in plan.jobs)  # each exactly once
    assert all(r["status"] == "ok" for r in recorded)
    assert not (out / "jobs" / second.id / RECORD_FILE).exists()


# ---------------------------------------------------------------------------------------
# The store: torn lines, recovered records, the lock
# ---------------------------------------------------------------------------------------
def _record(job_id, status="ok"):
    return {"model": {"name": "m"}, "strategy": "s", "status": status,
            "sweep": {"job_id": job_id}}


def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    results.append(tmp_path, _record("a"))
    results.append(tmp_path, _record("b"))
    good = (tmp_path / "results.jsonl").read_bytes()
    with open(tmp_path / "results.jsonl", "ab") as fh:
        fh.write(b'{"schema":"accelbench.record/1","model":{"na')  # killed mid-write
    with pytest.warns(UserWarning, match="incomplete last record"):
        store = SweepStore(tmp_path).__enter__()
    try:
        assert store.cut_bytes > 0
        assert (tmp_path / "results.jsonl").read_bytes() == good
        assert b'"model":{"na' in (tmp_path / "results.jsonl.torn").read_bytes()
        store.append(_record("c"))
        assert [r["sweep"]["job_id"] for r in lines(tmp_path / "results.jsonl")] == ["a", "b", "c"]
    finally:
        store.__exit__(None, None, None)


def test_a_finished_job_not_yet_appended_is_recovered_not_rerun(tmp_path):
    path = write_sweep(tmp_path, "rec", [], images=0)
    plan = sweep.validate(sweep.load(path, out_dir=tmp_path / "out"))
    (job,) = plan.jobs
    folder = tmp_path / "out" / "jobs" / job.id
    folder.mkdir(parents=True)
    write_record(folder, _record(job.id))  # the job finished; the sweep died before appending

    class Refuses(LocalExecutor):
        def run(self, *a, **k):
            raise AssertionError("nothing should run")

    result = run_plan(plan, Refuses())
    assert result.recovered == [job.id] and result.ran == []
    assert [r["sweep"]["job_id"] for r in lines(tmp_path / "out" / "results.jsonl")] == [job.id]
    assert not (folder / RECORD_FILE).exists()
    # Once appended, a stray record.json is dropped, never appended twice.
    write_record(folder, _record(job.id))
    assert run_plan(plan, Refuses()).recovered == []
    assert len(lines(tmp_path / "out" / "results.jsonl")) == 1


def test_two_sweeps_cannot_write_one_folder(tmp_path):
    from bench.sweep import SweepError

    with SweepStore(tmp_path):
        with pytest.raises(SweepError, match=f"another sweep \\(pid {os.getpid()}\\)"):
            SweepStore(tmp_path).__enter__()
    with SweepStore(tmp_path):  # released on exit
        pass


_WRITER = """
import sys, torch
from bench.measure import baseline_cache
k, n, fill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = set()
for i in range(n):
    baseline_cache.put(k, torch.full((4, 1, 64, 64), float(fill)))
    got = baseline_cache.get(k)
    assert got is not None and got.shape == (4, 1, 64, 64), got
    vals = got.unique().tolist()
    assert len(vals) == 1, vals  # never a mix of two writers' bytes
    seen.add(vals[0])
print(sorted(seen))
"""


def test_concurrent_jobs_cannot_corrupt_the_baseline_cache(tmp_path):
    env = {**os.environ, "ACCELBENCH_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, "samekey", "150", str(fill)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for fill in (1, 2, 3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    leftovers = [f.name for f in (tmp_path / "baselines").iterdir() if f.suffix == ".tmp"]
    assert leftovers == [] and (tmp_path / "baselines" / "samekey.safetensors").is_file()


def test_load_results_counts_each_job_once(crash_sweep, tmp_path):
    import shutil

    plan, _, rec, out = crash_sweep
    df = sweep.load_results(out)
    assert len(df) == len(plan.jobs) and df.job_id.is_unique
    assert df.group.nunique() == 1 and set(df.host) == {rec["baseline"]["sweep"]["host"]}
    # A job run again (--retry-failed) appends a newer record, which is the one that counts.
    copy = tmp_path / "results.jsonl"
    shutil.copy(out / "results.jsonl", copy)
    retried = {**rec["test-exit"], "status": "ok", "error": None}
    results.append(copy, retried)
    df = sweep.load_results(copy)
    assert len(df) == len(plan.jobs)
    assert df.set_index("strategy").loc["test-exit", "status"] == "ok"
    assert len(results.load(copy)) == len(plan.jobs) + 1  # the raw store keeps both
