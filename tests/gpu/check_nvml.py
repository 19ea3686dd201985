"""Check real NVML readings on an NVIDIA machine; prints the figures. Not part of CI.

    python tests/gpu/check_nvml.py [--device cuda:0] [--seconds 20] [--interval 0.05]
    python tests/gpu/check_nvml.py --fake      # the same checks against tests/fake_nvml, on the CPU

Takes about a minute (well under five) on a GPU:

1. idle: 3 s of sampling with the GPU idle;
2. load: a block of ``--alloc-gib`` GiB is allocated, then matrix products run for
   ``--seconds`` with the NVML sampler polling; the timed window is the loop;
3. overhead: the same loop timed with the sampler off and on, alternating.

Checks (PASS/FAIL/WARN, exit 1 on any FAIL, 2 when there is no GPU to check):

- power plausible for the card: idle above 0 and below the power limit; under load above
  idle and, on average, at most 1.1x the enforced limit;
- the energy counter's joules over the window agree with the integrated power samples
  within 10%;
- memory: NVML's peak for this process is at least the allocator's peak and at most the
  allocator's reserved peak plus 3 GiB (CUDA context, cuBLAS workspaces); the device's
  peak is at least the process's;
- sampling covered the window at about the asked interval (a warning when not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.measure.samplers import energy as energy_mod  # noqa: E402
from bench.measure.samplers.nvml import NVMLSampler  # noqa: E402

GIB = 2**30
clock = time.perf_counter


class Checks:
    """Collects PASS/FAIL/WARN lines."""

    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, ok: bool | None, what: str, detail: str) -> None:
        tag = "WARN" if ok is None else "PASS" if ok else "FAIL"
        self.failed += ok is False
        print(f"  [{tag}] {what}: {detail}")


def _load(device: str, fake: Any, seconds: float, matrix: int):
    """A matmul loop for ``seconds``; returns the iteration bounds."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(matrix, matrix, device=device, dtype=dtype)
    b = torch.randn(matrix, matrix, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda *a: None)
    bounds = []
    if fake is not None:
        fake.set_power(0, 450.0)
    end = clock() + seconds
    while clock() < end:
        sync()
        t0 = clock()
        for _ in range(10):
            c = a @ b
        sync()
        bounds.append((t0, clock()))
    del c
    if fake is not None:
        fake.set_power(0, 80.0)
    return bounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--alloc-gib", type=float, default=4.0)
    parser.add_argument("--matrix", type=int, default=8192)
    parser.add_argument("--overhead-rounds", type=int, default=6)
    parser.add_argument("--fake", action="store_true", help="run against the fake NVML on the CPU")
    args = parser.parse_args()
    started = clock()

    import torch

    fake = None
    if args.fake:
        from tests.support.fake_nvml import FakeGPU, FakeNVML

        fake = FakeNVML([FakeGPU(power_w=80.0, mem_used=2 * GIB)])
        device, nvml = "cpu", fake
        args.alloc_gib, args.matrix = min(args.alloc_gib, 0.25), min(args.matrix, 512)
        args.seconds = min(args.seconds, 3.0)
    else:
        if not torch.cuda.is_available():
            print("SKIP: torch sees no CUDA device; this check needs an NVIDIA GPU")
            return 2
        device, nvml = args.device, None
        torch.cuda.init()
    check = Checks()

    def sampler() -> NVMLSampler:
        gpu = 0 if device == "cpu" else (torch.device(device).index or 0)
        return NVMLSampler(device if device != "cpu" else "cuda:0", args.interval, gpus=[gpu], nvml=nvml)

    # 1. idle -------------------------------------------------------------------------
    idle = sampler()
    with idle:
        time.sleep(3.0)
    r_idle = idle.result()
    if "nvml" in r_idle.missing:
        print(f"SKIP: NVML unavailable: {r_idle.missing['nvml']}")
        return 2
    (gpu_key,) = r_idle.summary["gpus"]
    g_idle = r_idle.summary["gpus"][gpu_key]
    limit = g_idle.get("power_limit_w")
    print(f"GPU cuda:{gpu_key}: {g_idle.get('name')} ({g_idle.get('uuid')}), architecture "
          f"{g_idle.get('architecture')}, power limit {limit} W, memory {g_idle.get('memory_total_mb')} MiB")
    print(f"  power source: {g_idle.get('power_source')}")
    print(f"  mapping: {g_idle.get('mapping')}")
    missing = {k: v for k, v in r_idle.missing.items() if k.startswith("gpu")}
    if missing:
        print(f"  unreadable fields: {missing}")
    print(f"idle: mean power {g_idle['mean_power_w']} W, temperature {g_idle['temp_max_c']} C, "
          f"SM clock {g_idle['sm_clock_mean_mhz']} MHz, device memory {g_idle['mem_used_peak_mb']} MiB")
    idle_w = g_idle["mean_power_w"]
    check(idle_w is not None and idle_w > 0 and (limit is None or idle_w < limit),
          "idle power plausible", f"{idle_w} W (limit {limit} W)")

    # 2. load -------------------------------------------------------------------------
    nbytes = int(args.alloc_gib * GIB)
    if fake is None:
        torch.cuda.reset_peak_memory_stats(device)
    s = sampler()
    with s:
        block = torch.ones(nbytes, dtype=torch.uint8, device=device)
        if fake is not None:  # what a driver would report for this process
            fake.gpus[0].proc_mem[os.getpid()] = nbytes + 600 * 2**20
            fake.gpus[0].mem_used = nbytes + GIB
        bounds = _load(device, fake, args.seconds, args.matrix)
        del block
    window = (bounds[0][0], bounds[-1][1])
    r = s.result(window=window, images=len(bounds), bounds=bounds)
    g = r.summary["gpus"][gpu_key]
    if fake is None:
        alloc_peak = torch.cuda.max_memory_allocated(device) / 2**20
        reserved_peak = torch.cuda.max_memory_reserved(device) / 2**20
    else:
        alloc_peak = reserved_peak = nbytes / 2**20
    ts = r.series["t"]
    power = r.series[f"gpu{gpu_key}.power_w"]
    integrated = energy_mod.estimate(ts, window, power=power, power_note="check")
    counter = g["energy"]
    length = window[1] - window[0]
    print(f"load: {len(bounds)} iterations in {length:.1f} s, {r.summary['samples_in_window']} "
          f"samples in the window, sample cost {r.summary['sample_ms_median']:.3f} ms, sampler "
          f"CPU {r.summary['sampler_cpu_fraction']:.3%} of a core")
    print(f"  power: mean {g['mean_power_w']:.1f} W, peak {g['peak_power_w']:.1f} W; temperature max "
          f"{g['temp_max_c']} C; SM clock mean {g['sm_clock_mean_mhz']} MHz (min "
          f"{g['sm_clock_min_mhz']}); utilisation {g['util_gpu_mean']}%; throttle "
          f"{g['throttle_reasons']}")
    print(f"  energy: {counter['method']} {counter['energy_j']} J (avg {counter['avg_power_w']} W); "
          f"integrated power {integrated.energy_j} J; counter wraps "
          f"{g.get('energy_counter_wraps')}, resets {g.get('energy_counter_resets')}")
    print(f"  memory: allocator peak {alloc_peak:.0f} MiB, reserved peak {reserved_peak:.0f} MiB, "
          f"NVML process peak {g['proc_mem_peak_mb']} MiB, device peak {g['mem_used_peak_mb']} MiB")
    mean_w = g["mean_power_w"]
    check(mean_w is not None and idle_w is not None and mean_w > idle_w
          and (limit is None or mean_w <= 1.1 * limit),
          "load power plausible", f"mean {mean_w} W vs idle {idle_w} W, limit {limit} W")
    if counter["method"] == "nvml-energy-counter" and integrated.energy_j:
        gap = abs(counter["energy_j"] - integrated.energy_j) / integrated.energy_j
        check(gap <= 0.10, "energy counter vs integrated power",
              f"{counter['energy_j']:.1f} J vs {integrated.energy_j:.1f} J ({gap:.1%} apart, limit 10%)")
    else:
        check(False, "energy counter vs integrated power",
              f"counter {counter['method']} ({counter.get('reason')}), integrated {integrated.method}")
    proc = g["proc_mem_peak_mb"]
    if proc is None:
        check(None, "process memory peak", f"unavailable: {r.missing.get(f'gpu{gpu_key}.process_memory')}")
    else:
        check(alloc_peak <= proc <= reserved_peak + 3 * 1024, "process memory peak plausible",
              f"{proc:.0f} MiB within [allocator {alloc_peak:.0f}, reserved {reserved_peak:.0f} + 3072]")
    dev = g["mem_used_peak_mb"]
    check(dev is not None and dev >= (proc or alloc_peak), "device memory peak plausible",
          f"{dev} MiB >= {(proc or alloc_peak):.0f} MiB")
    expected = length / args.interval
    # a busy host delays the (SCHED_BATCH) poller: fewer samples is a warning, not a wrong reading
    check(True if r.summary["samples_in_window"] >= 0.8 * expected else None,
          "sampling covered the window",
          f"{r.summary['samples_in_window']} samples, {expected:.0f} expected")

    # 3. overhead ---------------------------------------------------------------------
    off, on = [], []
    per = max(1.0, args.seconds / 10)
    for i in range(args.overhead_rounds):
        for which in (("off", "on") if i % 2 == 0 else ("on", "off")):
            if which == "on":
                with sampler():
                    b = _load(device, None, per, args.matrix)
                on += [t1 - t0 for t0, t1 in b]
            else:
                b = _load(device, None, per, args.matrix)
                off += [t1 - t0 for t0, t1 in b]
    slowdown = statistics.median(on) / statistics.median(off) - 1
    print(f"overhead: iteration median {statistics.median(off) * 1000:.2f} ms off, "
          f"{statistics.median(on) * 1000:.2f} ms on: slowdown {slowdown:+.2%} "
          f"({len(off)} and {len(on)} iterations)")
    # timing noise must not fail an NVML check: above target is a warning
    check(True if slowdown < 0.01 else None, "sampler overhead", f"{slowdown:+.2%} (target < 1%)")
    print(f"done in {clock() - started:.0f} s: {'FAILED' if check.failed else 'all checks passed'}")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
