"""Harness overhead: the engine's timed calls against a bare loop of the same calls.

    OMP_NUM_THREADS=1 python tests/benchmarks/scripts/harness_overhead.py [--model digits-unet] [--rounds 10]

Both measure the same generation call (same prompts, seeds, batch) on the same loaded model:
one through the engine's arm (:class:`bench.measure.arms.LocalArm`, which every schedule times with:
device synchronised at both ends, every step stamped through the step callback), the other
a bare ``perf_counter`` loop without a step callback. Rounds alternate between the two so
that drift on a shared machine hits both alike. The target is a ratio of at most 1.02.
Prints the medians and the ratio; exits 1 above target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from bench.measure.arms import LocalArm
from bench.models import load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.02)
    args = parser.parse_args()

    model = load_model(args.model)
    prompts, _ = model.prompts(args.batch_size)
    seeds = list(range(args.batch_size))

    arm = LocalArm("baseline", model, prompts, seeds)
    arm.warmup(3)
    harness, bare = [], []
    for r in range(args.rounds):
        order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
        for which in order:
            if which == "harness":
                harness += arm.time(args.per_round).latencies_s
            else:
                for _ in range(args.per_round):
                    t0 = time.perf_counter()
                    with torch.inference_mode():
                        model.generate(prompts, seeds)
                    bare.append(time.perf_counter() - t0)
    h, b = statistics.median(harness), statistics.median(bare)
    ratio = h / b
    print(f"model={args.model} batch={args.batch_size} calls={len(harness)} each")
    print(f"engine median {h * 1000:.2f} ms   bare loop median {b * 1000:.2f} ms   "
          f"ratio {ratio:.4f} (target <= {args.target})")
    return 0 if ratio <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
