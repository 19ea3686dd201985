"""Drift robustness: speedups measured on a quiet machine and under CPU hogs started halfway.

    python tests/benchmarks/scripts/drift_robustness.py [--iterations 10] [--out runs/drift.json]

On digits-unet, ``steps:n=10`` and ``scheduler:name=dpm-solver+steps:n=10`` against the
baseline, through the engine, once per schedule (interleaved, sequential) and condition:

* ``quiet``: nothing else runs (run this script on a quiet machine);
* ``hog``: busy processes, one per core, start halfway through the timed calls and stop when
  the last timed call ends (torch on one thread, as a shared machine should be measured).

Every speedup is printed with its 95% interval, and its error against the quiet figure of
the same schedule. The target: interleaved under the hog within 10% of the quiet figure; the
sequential figures show the error a sequential schedule makes when the machine changes speed.
Exits 1 when an interleaved figure misses the target.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STACKS = ("steps:n=10", "scheduler:name=dpm-solver+steps:n=10")


def _spin() -> None:
    while True:
        pass


class Hogs:
    """Busy processes, one per core, started and stopped on demand."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[Any] = []
        self.started_at: float | None = None

    def start(self) -> None:
        if self.procs:
            return
        ctx = multiprocessing.get_context("spawn")
        self.procs = [ctx.Process(target=_spin, daemon=True) for _ in range(self.count)]
        for p in self.procs:
            p.start()
        self.started_at = time.perf_counter()

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.join()
        self.procs = []


class HogHalfway:
    """A schedule that delegates to ``inner`` and starts ``hogs`` once half of the expected
    timed calls are done, stopping them after the last one."""

    def __init__(self, inner: Any, hogs: Hogs | None, expected_calls: int) -> None:
        self.inner, self.hogs, self.expected = inner, hogs, expected_calls
        self.name, self.all_at_once = inner.name, inner.all_at_once
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def run(self, arms, timing, hooks=None):
        from bench.measure.schedules import Hooks

        hooks = hooks or Hooks()
        per_event = len(arms) * (self.inner.block if self.inner.name == "interleaved" else 1)
        user = hooks.progress

        def progress(msg: str) -> None:
            self.calls += per_event if self.inner.name == "interleaved" else 1
            if self.hogs is not None and self.calls >= self.expected / 2:
                self.hogs.start()
            if self.hogs is not None and self.calls >= self.expected:
                self.hogs.stop()
            if user:
                user(msg)

        return self.inner.run(arms, timing, Hooks(hooks.before_block, hooks.after_block, progress))


def measure(schedule: str, condition: str, args) -> dict[str, Any]:
    from bench.core.config import RunConfig, TimingConfig
    from bench.measure import schedules
    from bench.measure.engine import Engine

    n = args.iterations
    timing = TimingConfig(warmup=args.warmup, min_iterations=n, max_iterations=n, min_seconds=0)
    hogs = Hogs(os.cpu_count() or 1) if condition == "hog" else None
    wrapped = HogHalfway(schedules.make(schedule), hogs, expected_calls=n * (1 + len(STACKS)))
    with tempfile.TemporaryDirectory() as out:
        config = RunConfig(model=args.model, strategies=("baseline", *STACKS), batch_size=args.batch_size,
                           timing=timing, quality_images=0, out_dir=Path(out), threads=1,
                           count_flops=False, schedule=schedule)
        try:
            result = Engine(config, show_progress=False, schedule=wrapped).run()
        finally:
            if hogs is not None:
                hogs.stop()
    row = {"schedule": schedule, "condition": condition, "hog_started": hogs is not None}
    for r in result.records:
        lat = r["stats"]["latency_ms"]
        row[r["strategy"]] = {"median_ms": lat["median"], **(r["stats"].get("speedup") or {})}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--iterations", type=int, default=10, help="timed calls per stack")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON")
    args = parser.parse_args()

    rows = []
    for schedule in ("interleaved", "sequential"):
        for condition in ("quiet", "hog"):
            print(f"measuring {schedule}, {condition} ...", file=sys.stderr, flush=True)
            rows.append(measure(schedule, condition, args))
    failed = False
    print(f"\n{args.model}, batch {args.batch_size}, {args.iterations} timed calls per stack, torch on 1 thread; "
          f"hogs: {os.cpu_count()} busy processes from halfway through the timed calls")
    print(f"{'schedule':<12} {'condition':<9} {'stack':<38} {'speedup [95% CI]':<22} {'vs quiet':>8}")
    quiet = {r["schedule"]: r for r in rows if r["condition"] == "quiet"}
    for r in rows:
        for stack in STACKS:
            sp = r[stack]
            ref = quiet[r["schedule"]][stack]["ratio"]
            err = sp["ratio"] / ref - 1
            if r["schedule"] == "interleaved" and r["condition"] == "hog" and abs(err) > args.target:
                failed = True
            text = f"{sp['ratio']:.2f}x [{sp['ci_low']:.2f}-{sp['ci_high']:.2f}]"
            print(f"{r['schedule']:<12} {r['condition']:<9} {stack:<38} {text:<22} {err:>+8.1%}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    print("target (interleaved under the hog within "
          f"{args.target:.0%} of quiet): {'missed' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
