"""The typed record reader: every consumer reads records through :class:`Record`."""

from __future__ import annotations

import math

import pytest

from bench.core import results
from bench.core.config import TimingConfig
from bench.core.record import REFERENCE, Calls, Latency, Record, Speedup, failure_record
from bench.core.rules import FLOOR_SIGMAS, Rule


def _record() -> dict:
    return {
        "schema": "accelbench.record/2", "run_id": "r1", "strategy": "bf16", "status": "ok",
        "model": {"name": "digits-unet", "base_fingerprint": "f00d", "params": 1200},
        "settings": {"batch_size": 4, "device": "cpu"},
        "timing": {"latencies_s": [0.2, 0.21, "nan", None], "rounds": [0, 1], "step_times_s": [[0.1, 0.1]]},
        "stats": {"latency_ms": {"median": 205.0, "ci_low": 200.0, "ci_high": 210.0, "n": 2},
                  "speedup": {"ratio": 1.5, "ci_low": 1.4, "ci_high": 1.6, "significant": True,
                              "verdict": "faster"},
                  "images_per_s": 19.5, "tokens_per_s": 310.0},
        "quality": {"psnr": "inf", "fid": None, "adherence": 0.98},
        "quality_noise_floor": {"fid": {"mean": 1.0, "std": 0.1}},
        "cold": {"load_s": 1.5, "compiles": 2, "note": "text"},
        "memory": {"peak_mb": 512.0}, "energy": {"j_per_image": 3.0},
        "probe": {"latencies_s": [0.01, 0.011]},
        "a_field_from_a_newer_version": {"x": 1},
    }


def test_a_record_reads_typed_and_round_trips():
    rec = Record.from_dict(_record())
    assert (rec.model_name, rec.fingerprint, rec.batch_size, rec.is_reference) == ("digits-unet", "f00d", 4, False)
    assert rec.latency_ms == Latency(205.0, 200.0, 210.0, None, 2, None)
    assert rec.speedup == Speedup(1.5, 1.4, 1.6, None, True, None, None, "faster")
    calls = rec.calls
    assert isinstance(calls, Calls) and calls.latencies_s[:2] == [0.2, 0.21]
    assert math.isnan(calls.latencies_s[2]) and len(calls.latencies_s) == 3  # None left out
    assert (calls.rounds, calls.step_times_s, calls.warmup_s) == ([0, 1], [[0.1, 0.1]], [])
    assert rec.scores.values["psnr"] == math.inf and math.isnan(rec.scores.values["fid"])
    assert rec.cold_costs == {"load_s": 1.5, "compiles": 2.0}
    assert (rec.peak_memory_mb, rec.energy_j_per_image, rec.params) == (512.0, 3.0, 1200.0)
    assert rec.stat("tokens_per_s") == 310.0 and rec.stat("absent") is None
    assert rec.probe_latencies_s == [0.01, 0.011]
    again = Record.from_dict(rec.to_dict())
    assert again.to_dict() == rec.to_dict()


def test_the_reader_tolerates_what_old_or_odd_files_hold():
    rec = Record.from_dict({"strategy": REFERENCE, "model": "m", "settings": "oops", "status": None})
    assert rec.is_reference and rec.model_name == "m" and rec.settings == {} and rec.status == "ok"
    assert rec.latency_ms is None and rec.speedup is None and rec.calls.latencies_s == []
    failed = Record.from_dict(failure_record("m", "bf16", "boom", kind="crash").to_dict())
    assert failed.status == "failed" and failed.failure == {"kind": "crash"}


def test_flatten_reads_through_the_record(tmp_path):
    results.append(tmp_path, _record())
    row = results.load(tmp_path).iloc[0]
    assert row["speedup"] == 1.5 and row["latency_ms_median"] == 205.0 and row["psnr"] == math.inf
    assert row["peak_mem_mb"] == 512.0 and row["tokens_per_s"] == 310.0 and row["params"] == 1200
    assert [r.strategy for r in results.read_records(tmp_path)] == ["bf16"]


def test_one_rule_grammar_serves_the_gate_and_tune():
    """The gate's quality rules and tune's constraints are the same parsed object, and
    ``floor`` resolves the same way for both."""
    from bench.gate import QualityRule
    from bench.tune import Constraint, TuneError

    assert QualityRule is Rule
    gate_rule, tune_rule = QualityRule.parse("fid<=floor"), Constraint.parse("fid<=floor")
    assert gate_rule == tune_rule and gate_rule.floor
    reference = {"quality": {"fid": 2.0}, "quality_noise_floor": {"fid": {"std": 0.1}}}
    assert gate_rule.bound(reference) == pytest.approx(2.0 + FLOOR_SIGMAS * 0.1)
    assert gate_rule.holds(2.1, gate_rule.bound(reference)) and not gate_rule.holds(math.nan, 2.2)
    assert QualityRule.parse("psnr:-1").kind == "delta"
    with pytest.raises(TuneError, match="write metric>=value"):
        Constraint.parse("psnr:-1")  # a search has no baseline value to be worse than


@pytest.mark.parametrize("calls,elapsed,width,done", [
    (3, 10.0, None, False),      # below min_iterations
    (10, 1.0, None, False),      # below min_seconds
    (10, 3.0, None, True),       # both minimums, no target
    (200, 0.5, None, True),      # max_iterations caps
    (10, 301.0, None, True),     # max_seconds caps once min_iterations are done
])
def test_the_stop_rule(calls, elapsed, width, done):
    assert TimingConfig().done(calls, elapsed, width) is done


def test_the_stop_rule_with_a_target_interval():
    cfg = TimingConfig(target_ci=0.05)
    assert not cfg.done(10, 3.0, lambda: 0.08)
    assert cfg.done(10, 3.0, lambda: 0.04)
    assert cfg.done(10, 3.0, None)  # no interval can be had: the minimums decide
    assert cfg.done(10, 400.0, lambda: 0.5)  # max_seconds caps the target
