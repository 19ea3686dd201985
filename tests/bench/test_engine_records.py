"""Records are kept as each stack finishes: a stack that fails or runs out of memory is a failed
row and the run goes on; a run killed after its second stack keeps both records whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bench.core import results
from bench.core.config import RunConfig, TimingConfig
from bench.measure.engine import Engine
from strategies.core.base import Strategy, StrategyConfig, param
from strategies.core.registry import register

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class _OOMConfig(StrategyConfig):
    at: str = param("call", "where the device runs out of memory", choices=("apply", "call"))


class OutOfMemory(Strategy):
    """Runs out of device memory when applied or on its second timed call, as a stack too
    large for the card does."""

    name = "test-out-of-memory"
    summary = "runs out of memory (tests)"
    Config = _OOMConfig

    def apply(self, model):
        if self.config.at == "apply":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        generate, calls = model.generate, [0]

        def failing(*args, **kwargs):
            calls[0] += 1
            if calls[0] >= 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return generate(*args, **kwargs)

        model.generate = failing
        return model


register(OutOfMemory.name, OutOfMemory)


@pytest.mark.parametrize("schedule,at", [("interleaved", "call"), ("sequential", "call"),
                                         ("interleaved", "apply")])
def test_a_stack_that_runs_out_of_memory_is_a_failed_row_and_the_run_goes_on(tmp_path, schedule, at):
    config = RunConfig(strategies=("baseline", f"test-out-of-memory:at={at}", "steps:n=2"),
                       steps=4, batch_size=2, quality_images=4, out_dir=tmp_path, threads=1,
                       schedule=schedule, count_flops=False,
                       timing=TimingConfig(warmup=1, min_iterations=3, min_seconds=0))
    logs: list[str] = []
    result = Engine(config, show_progress=False, log=logs.append).run()
    by = {r["strategy"]: r for r in result.records}
    failed = by["test-out-of-memory" + (":at=apply" if at == "apply" else "")]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("out of memory: OutOfMemoryError: CUDA out of memory")
    assert by["baseline"]["status"] == by["steps:n=2"]["status"] == "ok"
    assert by["steps:n=2"]["stats"]["speedup"]["ratio"] > 1
    written = [r["strategy"] for r in results.iter_records(tmp_path)]
    assert written[0] == "baseline" and sorted(written) == sorted(by)
    if at == "call" and schedule == "interleaved":  # freed when it failed, not at the end
        assert any("its memory is freed" in line for line in logs)


def test_a_run_killed_after_its_second_stack_keeps_both_records_whole(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--schedule", "sequential", "--steps", "4",
           "-s", "steps:n=2", "-s", "steps:n=3", "-b", "1", "-n", "2", "--warmup", "0",
           "--min-seconds", "4", "-q", "2", "--no-flops", "--threads", "1", "--quiet", "-o",
           str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    path = out / "results.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.read_text().count("\n") >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["strategy"] for r in records] == ["baseline", "steps:n=2"]
    assert all(r["status"] == "ok" and r["stats"]["latency_ms"]["median"] > 0 for r in records)
    assert records[1]["stats"]["speedup"]["ratio"] > 1
    assert not (out / "run.json").exists()  # written only at the end
    assert len(results.load(out)) == 2


def test_the_fingerprint_is_taken_after_steps_and_resolution_are_set(tmp_path):
    """The stale-baseline check compares fingerprints: one taken before ``--steps`` is applied
    would call a 2-step and a 25-step baseline the same model."""
    from bench.core.config import RunConfig
    from bench.measure.engine import Engine

    prints = {}
    for steps in (None, 2):
        engine = Engine(RunConfig(model="digits-unet", strategies=["baseline"], steps=steps,
                                  out_dir=tmp_path / str(steps)))
        base, _ = engine._load()
        assert base.steps == (steps or base.steps)
        prints[steps] = engine.fingerprint
    assert prints[None] != prints[2]


def test_a_stack_pruned_as_too_slow_is_recorded_as_pruned(tmp_path):
    """``prune_slower_than``: a stack 4x the reference's work leaves the interleaved run after
    one round; its record says ``pruned`` with its ratio and keeps that round's timing."""
    from bench.core.config import RunConfig, TimingConfig
    from bench.measure.engine import Engine

    config = RunConfig(model="digits-unet", strategies=["baseline", "steps:n=8"], steps=2, batch_size=1,
                       timing=TimingConfig(warmup=1, min_iterations=6, max_iterations=6, min_seconds=0,
                                           prune_slower_than=2.0),
                       quality_images=2, threads=1, out_dir=tmp_path, schedule="interleaved",
                       count_flops=False)
    records = {r["strategy"]: r for r in Engine(config, show_progress=False).run().records}
    slow = records["steps:n=8"]
    assert slow["status"] == "pruned" and slow["error"].startswith("pruned:"), slow.get("error")
    assert len(slow["timing"]["latencies_s"]) == 1
    assert records["baseline"]["status"] == "ok" and len(records["baseline"]["timing"]["latencies_s"]) == 1
