"""The GPU acceptance run: prove the GPU path on real hardware in one prepared run.

    tests/gpu/acceptance.sh [--dry-run] [--out DIR]      (the shell wrapper sets up imports)

Steps, each with its own time limit so the whole run stays under 8 minutes on one
H100/H200-class GPU:

1. ``nvml``: ``tests/gpu/check_nvml.py``: power above idle while the GPU works, the energy
   counter against integrated power within 10%, memory peaks against the allocator's.
2. ``timing``: the engine's timed calls against CUDA events around the same calls (medians
   within 2%).
3. ``sdxl``: full-size ``arch:sdxl`` at 1024x1024 (10 steps): baseline, bf16, bf16+compile,
   fp8 (where the GPU has it: compute capability 8.9 and up) and deepcache.
4. ``flux``: full-size ``arch:flux`` at 1024x1024 (4 steps): baseline, bf16, bf16+compile, fp8
   and fbcache.
5. ``report``: the HTML report of both runs.

Every step's figures and PASS/FAIL checks go to ``OUT/acceptance.json``; the exit status is 1
when any check failed. ``--dry-run`` lists the steps and their commands and exits 0 (any
machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
#: Seconds each step may take (8 minutes in all).
LIMITS = {"nvml": 75, "timing": 45, "sdxl": 150, "flux": 170, "report": 30}


def _accelbench(*args: str) -> list[str]:
    return [PY, "-m", "bench.cli", *args]


def _stacks(extra: str) -> list[str]:
    out = ["-s", "bf16", "-s", "bf16+compile", "-s", extra]
    if _fp8():
        out += ["-s", "quant:mode=fp8"]
    return out


def _fp8() -> bool:
    try:
        import torch

        return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
    except Exception:  # noqa: BLE001 - no torch or no GPU: the dry run still lists the steps
        return False


def plan(out: Path) -> list[tuple[str, list[str]]]:
    """(step, command) of every step; commands of the run steps, in order."""
    common = ["--device", "cuda", "--resolution", "1024", "--batch-size", "1", "--iterations", "3",
              "--warmup", "2", "--quality-images", "2", "--no-report", "--quiet"]
    return [
        ("nvml", [PY, str(ROOT / "tests" / "gpu" / "check_nvml.py"), "--seconds", "15",
                  "--overhead-rounds", "3"]),
        ("timing", [PY, str(Path(__file__)), "--timing-check"]),
        ("sdxl", _accelbench("run", "--model", "arch:sdxl", "--steps", "10", *common,
                             *_stacks("deepcache"), "-o", str(out / "sdxl"))),
        ("flux", _accelbench("run", "--model", "arch:flux", "--steps", "4", *common,
                             *_stacks("fbcache"), "-o", str(out / "flux"))),
        ("report", _accelbench("report", str(out / "sdxl"), str(out / "flux"), "-o",
                               str(out / "report.html"))),
    ]


def timing_check() -> int:
    """The engine's timed calls against CUDA events around the same calls."""
    import torch

    from bench.arms import LocalArm

    class Model:
        """Matrix products standing in for a model's steps."""

        device = torch.device("cuda")

        def __init__(self) -> None:
            self.a = torch.randn(4096, 4096, device="cuda")

        def generate(self, prompts, seeds, step_callback=None):
            x = self.a
            for i in range(8):
                x = torch.tanh(x @ self.a)
                if step_callback:
                    step_callback(i)
            return x

    arm = LocalArm("matmul", Model(), ["p"], [0])
    arm.warmup(3)
    ours, events = [], []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        got = arm.time(1)
        end.record()
        torch.cuda.synchronize()
        ours.append(got.latencies_s[0] * 1000)
        events.append(start.elapsed_time(end))
    a, b = statistics.median(ours), statistics.median(events)
    ratio = a / b
    print(json.dumps({"harness_median_ms": a, "cuda_events_median_ms": b, "ratio": ratio}))
    print(f"  [{'PASS' if abs(ratio - 1) <= 0.02 else 'FAIL'}] harness vs CUDA events: {ratio:.4f}")
    return 0 if abs(ratio - 1) <= 0.02 else 1


def _run_checks(step: str, out: Path) -> list[dict[str, Any]]:
    """Checks on the records of a model run."""
    from bench import results

    checks = []
    path = out / step
    if not (path / "results.jsonl").exists():
        return [{"check": f"{step}: results written", "ok": False}]
    records = list(results.iter_records(path))
    for r in records:
        name = f"{step}: {r['strategy']}"
        if r.get("status") == "unsupported":
            checks.append({"check": f"{name} applies", "ok": None, "detail": r.get("error")})
            continue
        checks.append({"check": f"{name} ok", "ok": r.get("status") == "ok", "detail": r.get("error")})
        if r.get("status") != "ok":
            continue
        mem, energy = r.get("memory") or {}, r.get("energy") or {}
        peak, device = mem.get("cuda_allocator_peak_mb"), mem.get("device_peak_mb")
        checks.append({"check": f"{name} allocator and device peaks", "ok": bool(peak) and bool(device) and device >= peak,
                       "detail": f"allocator {peak} MiB, device {device} MiB"})
        checks.append({"check": f"{name} energy measured", "ok": energy.get("method") != "unavailable",
                       "detail": f"{energy.get('method')}: {energy.get('j_per_image')} J/image"})
        sp = (r.get("stats") or {}).get("speedup") or {}
        checks.append({"check": f"{name} figures", "ok": None,
                       "detail": f"{r['stats']['latency_ms']['median']:.0f} ms/call, speedup {sp.get('ratio')}"})
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/acceptance"))
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--timing-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timing_check:
        return timing_check()
    steps = plan(args.out)
    if args.dry_run:
        total = sum(LIMITS.values())
        print(f"GPU acceptance run: {len(steps)} steps, at most {total / 60:.1f} min, into {args.out}")
        for name, cmd in steps:
            print(f"  {name:<7} ({LIMITS[name]:>3} s max): {' '.join(cmd)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"steps": {}, "checks": []}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, cmd in steps:
        started = time.perf_counter()
        try:
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=LIMITS[name], env=env)
            rc, output = res.returncode, res.stdout + res.stderr
        except subprocess.TimeoutExpired as exc:
            rc, output = "timeout", str(exc.stdout or "") + str(exc.stderr or "")
        seconds = time.perf_counter() - started
        (args.out / f"{name}.log").write_text(output)
        print(f"== {name}: exit {rc} in {seconds:.0f} s", flush=True)
        print(output[-2500:], flush=True)
        summary["steps"][name] = {"exit": rc, "seconds": seconds}
        summary["checks"].append({"check": f"{name} finished", "ok": rc == 0, "detail": f"exit {rc}"})
        if name in ("sdxl", "flux"):
            summary["checks"] += _run_checks(name, args.out)
    failed = [c for c in summary["checks"] if c["ok"] is False]
    summary["passed"] = not failed
    (args.out / "acceptance.json").write_text(json.dumps(summary, indent=1, default=str))
    for c in summary["checks"]:
        tag = "INFO" if c["ok"] is None else "PASS" if c["ok"] else "FAIL"
        print(f"  [{tag}] {c['check']}: {c.get('detail') or ''}")
    print(f"acceptance: {'PASS' if not failed else f'FAIL ({len(failed)} checks)'}; {args.out / 'acceptance.json'}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
