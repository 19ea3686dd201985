"""How long a report over many strategies takes to build (target: seconds for 50).

Writes a synthetic run directory (real record schema, made-up numbers: see
``tests/support/reports_synthetic.py``) with N strategies, each with raw timings, per-step times, an
image grid and a sampler series file, then builds the report and prints the time, split into
loading, figures and rendering. Optionally a second run, to time the comparison too.

    python tests/benchmarks/scripts/report_speed.py                  # 50 strategies
    python tests/benchmarks/scripts/report_speed.py -n 100 --compare --profile
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--strategies", type=int, default=50)
    parser.add_argument("--compare", action="store_true", help="also build a two-run comparison report")
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    parser.add_argument("--keep", type=Path, default=None, help="write the run(s) and report here")
    args = parser.parse_args()

    from tests.support.reports_synthetic import make_run

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        t0 = time.perf_counter()
        make_run(base / "run-a", args.strategies, seed=0, with_energy=True)
        if args.compare:
            make_run(base / "run-b", args.strategies, seed=1, slowdown=1.1, with_energy=True)
        print(f"synthetic run(s) written in {time.perf_counter() - t0:.2f} s")

        import reports.html  # import cost reported separately from the build

        t_import = time.perf_counter()
        import matplotlib.figure  # noqa: F401
        import seaborn  # noqa: F401

        print(f"plotting libraries imported in {time.perf_counter() - t_import:.2f} s")
        runs = [base / "run-a"] + ([base / "run-b"] if args.compare else [])
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
        cpu0 = time.process_time()
        rep = reports.html.build_report(runs, base / "report.html")
        cpu = time.process_time() - cpu0
        if args.profile:
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        size = rep.path.stat().st_size / 2**20
        print(
            f"report over {rep.entries} records ({args.strategies} strategies x {len(runs)} run(s)): "
            f"{rep.seconds:.2f} s wall, {cpu:.2f} s CPU, {rep.figures} figures, {rep.grids} image grids, "
            f"{size:.1f} MiB"
        )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"(1-minute load average {load:.1f} on {os.cpu_count()} CPUs: wall time is CPU time "
              "stretched by whatever else runs)")


if __name__ == "__main__":
    main()
