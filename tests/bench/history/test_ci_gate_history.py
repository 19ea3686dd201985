"""CI's gate script against history: tests/benchmarks/ci_gate.sh with the measuring step
replaced by a prepared run (the gates themselves are the real commands), and the committed
seed it loads."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import results
from bench.core.record import REFERENCE

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tests/benchmarks/ci_gate.sh"
BASELINE = ROOT / "tests/benchmarks/baseline/digits-unet.json"
SEED = ROOT / "tests/benchmarks/history"


def _seed_module():
    spec = importlib.util.spec_from_file_location(
        "history_seed", ROOT / "tests/benchmarks/scripts/history_seed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepared_run(folder: Path, slower: float = 1.0) -> Path:
    """The committed baseline's whole run as records; every stack but the reference
    ``slower`` times slower (its speedup divided by it)."""
    seed, baseline = _seed_module(), json.loads(BASELINE.read_text())
    entries = [e for e in baseline["entries"] if e["status"] == "ok"]
    ref = next(e for e in entries if e["strategy"] == REFERENCE)["latencies_s"]
    records = [seed._record(e, e["latencies_s"], ref, baseline, "ab" * 20, 0) for e in entries]
    folder.mkdir(parents=True)
    for rec in records:
        if rec["strategy"] != REFERENCE and slower != 1.0:
            rec["stats"]["latency_ms"] = {k: (v * slower if k in ("median", "ci_low", "ci_high") else v)
                                          for k, v in rec["stats"]["latency_ms"].items()}
            sp = rec["stats"]["speedup"]
            for k in ("ratio", "ci_low", "ci_high"):
                sp[k] /= slower
        results.append(folder, rec)
    return folder


def _check(tmp_path: Path, run: Path) -> tuple[int, dict, str]:
    """Run ``ci_gate.sh check`` with ``accelbench run`` replaced by a copy of ``run``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = shutil.which("accelbench") or str(Path(sys.executable).parent / "accelbench")
    stub = bin_dir / "accelbench"
    stub.write_text(f"""#!/usr/bin/env bash
if [ "$1" = run ]; then
  while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
  mkdir -p "$out" && cp {run}/results.jsonl "$out"/ && exit 0
fi
exec {real} "$@"
""")
    stub.chmod(0o755)
    out = tmp_path / "gate-run"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "ACCELBENCH_GATE_OUT": str(out), "OMP_NUM_THREADS": "1"}
    env.pop("ACCELBENCH_GATE_HISTORY", None)
    done = subprocess.run(["bash", str(SCRIPT), "check"], env=env, capture_output=True,
                          text=True, timeout=300)
    verdict = json.loads((out / "history-verdict.json").read_text())
    return done.returncode, verdict, done.stdout + done.stderr


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_the_seed_is_committed_and_small():
    seeds = sorted(SEED.glob("seed-*.jsonl"))
    assert len(seeds) >= 8 and sum(p.stat().st_size for p in seeds) < 100_000


def test_the_seed_is_what_the_script_writes_from_the_baseline(tmp_path):
    """The committed seed is reproducible: the bootstrap is seeded."""
    seed = _seed_module()
    runs = seed.seed_records(json.loads(BASELINE.read_text()), "ab" * 20)
    committed = [list(results.iter_records(p)) for p in sorted(SEED.glob("seed-*.jsonl"))]
    assert len(runs) == len(committed)
    for made, kept in zip(runs, committed, strict=True):
        assert [r["stats"]["speedup"]["ratio"] for r in made if "speedup" in r["stats"]] == \
            pytest.approx([r["stats"]["speedup"]["ratio"] for r in kept if "speedup" in r["stats"]])


def test_slim_keeps_what_the_store_reads(tmp_path):
    from bench.history.store import HistoryStore
    from tests.bench.history.synthetic import commit_hex, make_run

    seed = _seed_module()
    run = make_run(tmp_path / "full", commit=commit_hex(3))
    slim = tmp_path / "slim.jsonl"
    for rec in results.iter_records(run):
        results.append(slim, seed.slim(rec))
    assert slim.stat().st_size < (run / "results.jsonl").stat().st_size
    assert all("timing" not in r for r in results.iter_records(slim))
    a, b = HistoryStore(tmp_path / "a.sqlite"), HistoryStore(tmp_path / "b.sqlite")
    a.add_run(run)
    b.add_run(slim)
    cols = ["series", "value", "low", "high", "commit"]
    assert a.points()[cols].equals(b.points()[cols])


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_an_unchanged_tree_passes_the_history_gate(tmp_path):
    code, verdict, output = _check(tmp_path, _prepared_run(tmp_path / "same"))
    assert code == 0, output
    assert verdict["exit_code"] == 0
    assert {s["verdict"] for s in verdict["series"]} == {"pass"}
    assert len(verdict["series"]) == 2  # the two stacks' speedups


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_a_30_percent_loss_is_caught_by_the_history_gate(tmp_path):
    # a speedup 30% lower: each stack 1/0.7 = 1.43 times slower than the committed run
    code, verdict, output = _check(tmp_path, _prepared_run(tmp_path / "slow", slower=1 / 0.7))
    assert code == 1, output
    assert verdict["exit_code"] == 1
    assert {s["verdict"] for s in verdict["series"]} == {"regression"}
