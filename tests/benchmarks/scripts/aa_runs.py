"""A/A: how often ``accelbench run`` calls two identical stacks different.

    python tests/benchmarks/scripts/aa_runs.py [--runs 20] [--out runs/aa.json]

Each run is what ``accelbench run -s steps:n=25`` does on digits-unet (whose default is 25
steps, so the stack is the baseline under another name): the engine's default schedule,
default iterations, batch 8, no quality images. A run raises a false alarm when it calls the
speedup significant. The target: not significant in at least 19 of 20 runs (a test at
alpha = 0.05 is expected to err once in 20). Prints each run's speedup, interval and p-value
and the count; exits 1 below the target.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--stack", default="steps:n=25", help="a stack identical to the baseline")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from bench.core.config import RunConfig
    from bench.measure.engine import Engine

    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            config = RunConfig(model=args.model, strategies=("baseline", args.stack), quality_images=0,
                               out_dir=Path(out), count_flops=False, threads=args.threads)
            result = Engine(config, show_progress=False).run()
        sp = result.records[1]["stats"]["speedup"]
        rows.append({"run": i, "schedule": result.schedule["name"], **sp})
        flag = "FALSE ALARM" if sp["significant"] else "n.s."
        print(f"run {i + 1:2d} ({result.schedule['name']}): {sp['ratio']:.3f}x "
              f"[{sp['ci_low']:.3f}-{sp['ci_high']:.3f}] p={sp['p_value']:.3f} {flag}", flush=True)
    quiet = sum(not r["significant"] for r in rows)
    need = int(round(args.runs * 19 / 20))
    print(f"\nnot significant in {quiet} of {args.runs} runs (target: at least {need})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0 if quiet >= need else 1


if __name__ == "__main__":
    sys.exit(main())
