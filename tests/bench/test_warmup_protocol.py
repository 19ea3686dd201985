"""The protocol's warm-up: at least two untimed calls by default everywhere; fewer is allowed
(a smoke check) but every record so measured says so."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from bench.core.config import PROTOCOL_WARMUP, RunConfig, TimingConfig, warmup_caveat

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_meets_the_protocol_and_fewer_is_flagged_not_refused():
    assert PROTOCOL_WARMUP == 2
    assert TimingConfig().warmup == PROTOCOL_WARMUP and not TimingConfig().below_protocol
    for n in (0, 1):
        assert TimingConfig(warmup=n).below_protocol
        assert f"below the protocol's {PROTOCOL_WARMUP}" in warmup_caveat(n)
    assert warmup_caveat(2) is None and warmup_caveat(5) is None
    with pytest.raises(ValueError, match="warmup"):
        TimingConfig(warmup=-1)


def test_every_front_end_defaults_to_the_protocol():
    from bench import pytest_plugin
    from bench.cli import main
    from bench.sweep import matrix

    for command in (main.commands["run"], main.commands["matrix"]):
        option = next(p for p in command.params if p.name == "warmup")
        assert option.default >= PROTOCOL_WARMUP, command.name
    assert inspect.signature(matrix.run_matrix).parameters["warmup"].default >= PROTOCOL_WARMUP
    assert pytest_plugin.DEFAULT_WARMUP_ROUNDS >= PROTOCOL_WARMUP
    assert RunConfig().timing.warmup >= PROTOCOL_WARMUP


def test_the_ci_gate_warms_up_as_the_protocol_says():
    script = (ROOT / "tests" / "benchmarks" / "ci_gate.sh").read_text()
    values = [int(v) for v in re.findall(r"--warmup\s+(\d+)", script)]
    assert values and all(v >= PROTOCOL_WARMUP for v in values)


def _run(tmp_path, warmup: int):
    from bench.measure.engine import Engine

    config = RunConfig(strategies=("baseline",), steps=2, batch_size=1, quality_images=0,
                       out_dir=tmp_path, threads=1, count_flops=False,
                       timing=TimingConfig(warmup=warmup, min_iterations=1, min_seconds=0))
    return Engine(config, show_progress=False).run()


def test_a_record_warmed_up_less_than_the_protocol_carries_a_caveat(tmp_path):
    short = _run(tmp_path / "short", 1)
    (rec,) = short.records
    assert rec["status"] == "ok" and len(rec["timing"]["warmup_s"]) == 1
    assert any("warm-up of 1 call, below the protocol's 2" in c for c in rec["caveats"])
    assert any("below the measurement protocol" in w for w in short.warnings)

    full = _run(tmp_path / "full", 2)
    (rec,) = full.records
    assert len(rec["timing"]["warmup_s"]) == 2
    assert not any("warm-up" in c for c in rec.get("caveats", []))
    assert not any("protocol" in w for w in full.warnings)
