"""Separate runs through the gate: A/A pairs must pass, a genuinely slower run must be caught.

Each pair is two `accelbench run --strategy baseline --steps 10` runs (default settings
otherwise), one right after the other, gated with `accelbench gate B --baseline A`; a
separate run at `--steps 20` (twice the work) is gated against each pair's first run, with
`--allow-settings-change` (the step count is the change the gate must catch).
Separate runs are compared through each run's machine-speed probe, so a machine that got
slower between them is not a regression.

Usage (on a quiet machine; about a minute per pair)::

    python tests/benchmarks/scripts/aa_gate.py --pairs 10 --out runs/aa-gate
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(out: Path, steps: int) -> None:
    subprocess.run([sys.executable, "-m", "bench.cli", "run", "--strategy", "baseline", "--steps",
                    str(steps), "--quiet", "--no-report", "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL)


def _gate(current: Path, baseline: Path, *extra: str) -> tuple[int, str]:
    res = subprocess.run([sys.executable, "-m", "bench.cli", "gate", str(current), "--baseline",
                          str(baseline), *extra], capture_output=True, text=True)
    line = next((ln for ln in res.stdout.splitlines() if "latency_ms" in ln), res.stdout.strip())
    return res.returncode, " ".join(line.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="aa-gate-"))
    rows = []
    for i in range(args.pairs):
        a, b, slow = root / f"{i}-a", root / f"{i}-b", root / f"{i}-steps20"
        _run(a, 10)
        _run(b, 10)
        _run(slow, 20)
        aa, aa_line = _gate(b, a)
        # the step count is the injected change itself: compared on purpose
        caught, caught_line = _gate(slow, a, "--allow-settings-change")
        rows.append({"pair": i, "aa_exit": aa, "aa": aa_line, "slow_exit": caught, "slow": caught_line})
        print(f"pair {i}: A/A exit {aa}: {aa_line}\n        steps 20 exit {caught}: {caught_line}",
              flush=True)
    passed = sum(r["aa_exit"] == 0 for r in rows)
    caught = sum(r["slow_exit"] == 1 for r in rows)
    print(f"\nA/A passed {passed} of {len(rows)} (target: at least {len(rows) - len(rows) // 10}); "
          f"steps 20 caught {caught} of {len(rows)} (target: all)")
    (root / "aa_gate.json").write_text(json.dumps(rows, indent=1))
    return 0 if passed >= len(rows) - len(rows) // 10 and caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
