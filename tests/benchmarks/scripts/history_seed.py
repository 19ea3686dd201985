"""Write the history seed CI's gate loads: past points of the gate's stacks.

    python tests/benchmarks/scripts/history_seed.py bootstrap BASELINE.json OUT_DIR
    python tests/benchmarks/scripts/history_seed.py slim RUN_DIR OUT_FILE

``bootstrap`` (what ``ci_gate.sh refresh`` runs, and how the committed seed was made): the
committed gate baseline holds one interleaved run of 20 rounds with every raw latency and its
round. Each of ``--points`` (10) seed runs is a bootstrap replicate of that run at the size of
a CI check (``--rounds`` 8): rounds drawn with replacement, each drawn round keeping all its
stacks' latencies, so every stack's speedup over the reference is still paired round by round
(:func:`bench.core.stats.paired_speedup`). The seed's scatter is then the sampling noise of an
8-round run on the baseline's machine; drift between real runs is not in it, and the gate's
threshold (``--max-slowdown``) is what keeps other machines' runs from alarming. Records are
filed under the commit that last changed the baseline file, with ``threads=1`` as ci_gate.sh
measures (the baseline file does not keep the thread count). ``OUT_DIR/seed-<k>.jsonl``.

``slim`` (what ``ci_gate.sh seed-history`` runs after each of its real A/A runs): a run's
records with only what the history store reads (no raw samples), a few KB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from bench.core import results, stats
from bench.core.record import REFERENCE


def _commit(path: Path) -> str:
    path = path.resolve()
    out = subprocess.run(["git", "log", "-1", "--format=%H", "--", str(path)], capture_output=True,
                         text=True, cwd=path.parent)
    sha = out.stdout.strip()
    if not sha:  # not committed yet (a refresh): the tree's commit
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=path.parent).stdout.strip()
    return sha


def seed_records(baseline: dict, commit: str, points: int = 10, rounds: int = 8,
                 seed: int = 0) -> list[list[dict]]:
    """The records of each bootstrap replicate (a list of records per seed run)."""
    entries = [e for e in baseline["entries"] if e.get("status") == "ok" and e.get("rounds")]
    by_round = [{r: t for t, r in zip(e["latencies_s"], e["rounds"], strict=True)} for e in entries]
    common = sorted(set.intersection(*(set(b) for b in by_round)))
    rng = np.random.default_rng(seed)
    out = []
    for k in range(points):
        drawn = [int(r) for r in rng.choice(common, size=rounds, replace=True)]
        lat = {e["strategy"]: [b[r] for r in drawn] for e, b in zip(entries, by_round, strict=True)}
        out.append([_record(e, lat[e["strategy"]], lat.get(REFERENCE), baseline, commit, k)
                    for e in entries])
    return out


def _record(e: dict, lat: list[float], ref: list[float] | None, baseline: dict, commit: str,
            k: int) -> dict:
    summary = stats.summarize([t * 1000 for t in lat])
    rounds = list(range(len(lat)))
    rec = {
        "run_id": f"{e.get('run_id') or 'seed'}-boot{k}", "created": baseline.get("created"),
        "model": {"name": e["model"], "base_fingerprint": e.get("fingerprint")},
        "strategy": e["strategy"], "status": "ok", "settings": {**e["settings"], "threads": 1},
        "environment": {"git_commit": commit},
        "stats": {"latency_ms": {"median": summary.median, "ci_low": summary.ci_low,
                                 "ci_high": summary.ci_high, "iqr": summary.iqr,
                                 "n": summary.n, "ci_method": "order-statistics"}},
        "quality": e.get("quality") or {}, "quality_meta": e.get("quality_meta") or {},
        "notes": {"history_seed": f"bootstrap replicate {k} ({len(lat)} rounds) of the "
                                  "committed gate baseline's run"},
    }
    if e["strategy"] != REFERENCE and ref:
        logs = stats.paired_log_ratios(ref, rounds, lat, rounds)
        rec["stats"]["speedup"] = stats.paired_speedup(logs).as_dict()
    return rec


#: What ``slim`` keeps of a record (the store reads nothing else).
KEEP = ("run_id", "created", "model", "strategy", "status", "error", "settings", "stats",
        "memory", "energy", "quality", "quality_meta")


def slim(record: dict) -> dict:
    """A record with only what the history store reads."""
    out = {k: record[k] for k in KEEP if k in record}
    env = record.get("environment") or {}
    out["environment"] = {k: env[k] for k in ("git_commit", "cpu", "cpu_count", "gpu") if k in env}
    out["model"] = {k: v for k, v in (record.get("model") or {}).items()
                    if k in ("name", "base_fingerprint")}
    stats_block = dict(out.get("stats") or {})
    out["stats"] = {k: stats_block[k] for k in ("latency_ms", "speedup") if k in stats_block}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    boot = sub.add_parser("bootstrap")
    boot.add_argument("baseline", type=Path)
    boot.add_argument("out", type=Path)
    boot.add_argument("--points", type=int, default=10)
    boot.add_argument("--rounds", type=int, default=8)
    thin = sub.add_parser("slim")
    thin.add_argument("run", type=Path)
    thin.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.mode == "slim":
        args.out.unlink(missing_ok=True)
        for rec in results.iter_records(args.run):
            results.append(args.out, slim(rec))
        return
    baseline = json.loads(args.baseline.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("seed-*.jsonl"):
        old.unlink()
    runs = seed_records(baseline, _commit(args.baseline), args.points, args.rounds)
    for k, records in enumerate(runs):
        for rec in records:
            results.append(args.out / f"seed-{k:02d}.jsonl", rec)
    print(f"history seed: {len(runs)} runs in {args.out}")


if __name__ == "__main__":
    main()
