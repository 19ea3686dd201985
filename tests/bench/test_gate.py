"""The regression gate: rules, tests, readers, verdict and CLI."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from bench import gate
from bench.cli import main
from bench.core import results
from bench.gate import Entry, GateError, QualityRule, Rules

pytest_plugins = ["pytester"]

META = {
    "psnr": {"higher_is_better": True, "unit": "dB"},
    "fid": {"higher_is_better": False, "unit": ""},
    "adherence": {"higher_is_better": True, "unit": ""},
}


def _lat(median_s: float, n: int = 20, spread: float = 0.02, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median_s * (1 + spread * rng.standard_normal(n)))


def _entry(key="m | s | b=2", lat=None, quality=None, meta=None, **kw) -> Entry:
    lat = lat if lat is not None else _lat(0.1)
    return Entry.from_latencies(key, lat, quality=quality or {}, quality_meta=meta or META, **kw)


# -- rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,kind,amount,relative,sign", [
    ("psnr:-1", "delta", 1.0, False, -1),
    ("fid:+10%", "delta", 0.10, True, 1),
    ("ssim:0.02", "delta", 0.02, False, 0),
    ("adherence>=0.7", "bound", 0.7, False, 0),
    ("fid<=40", "bound", 40.0, False, 0),
])
def test_quality_rule_parsing(text, kind, amount, relative, sign):
    rule = QualityRule.parse(text)
    assert (rule.kind, rule.relative, rule.sign) == (kind, relative, sign)
    assert rule.amount == pytest.approx(amount)


@pytest.mark.parametrize("text", ["psnr", "psnr:-", "psnr:abc", ":1", "psnr=3", "psnr:-1%%"])
def test_bad_quality_rule_is_a_usage_error(text):
    with pytest.raises(GateError, match="bad quality rule"):
        QualityRule.parse(text)


def test_a_sign_against_the_metrics_direction_is_refused():
    with pytest.raises(GateError, match=r"higher-is-better.*write psnr:-1"):
        QualityRule.parse("psnr:+1").check_direction(True)
    with pytest.raises(GateError, match=r"lower-is-better.*write fid:\+10%"):
        QualityRule.parse("fid:-10%").check_direction(False)


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("0.1", 0.10), ("2.5%", 0.025), (0.2, 0.2)])
def test_fractions(text, value):
    assert gate.parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "ten", "-5%"])
def test_bad_fractions(text):
    with pytest.raises(GateError):
        gate.parse_fraction(text)


# -- latency ---------------------------------------------------------------------------------
def test_significant_slowdown_beyond_threshold_is_a_regression():
    base, cur = _entry(lat=_lat(0.100, seed=1)), _entry(lat=_lat(0.120, seed=2))
    check = gate.compare_latency(base, cur, Rules(max_slowdown=0.10))
    assert check.outcome == "regression" and check.test == "mann-whitney"
    expected_p = sps.mannwhitneyu(base.latencies_s, cur.latencies_s, alternative="two-sided").pvalue
    assert check.p_value == pytest.approx(expected_p)
    assert check.change == pytest.approx(np.median(cur.latencies_s) / np.median(base.latencies_s) - 1)


def test_slowdown_below_threshold_or_not_significant_passes():
    base = _entry(lat=_lat(0.100, seed=1))
    small = gate.compare_latency(base, _entry(lat=_lat(0.105, seed=2)), Rules(max_slowdown=0.10))
    assert small.outcome == "pass" and small.significant  # significant but small
    noisy = gate.compare_latency(_entry(lat=[0.1, 0.3, 0.1]), _entry(lat=[0.2, 0.1, 0.3]), Rules())
    assert noisy.outcome == "pass" and "inconclusive" in noisy.reason
    faster = gate.compare_latency(base, _entry(lat=_lat(0.080, seed=3)), Rules())
    assert faster.outcome == "improved"


def test_paired_rounds_cancel_drift():
    """Drift between rounds hides a 15% slowdown from the unpaired test, not the paired one."""
    rng = np.random.default_rng(0)
    drift = np.exp(np.linspace(0, 1.5, 20))  # the machine slows down 4.5x during the job
    a = list(0.1 * drift * (1 + 0.02 * rng.standard_normal(20)))
    b = list(0.115 * drift * (1 + 0.02 * rng.standard_normal(20)))
    rounds = list(range(20))
    base = _entry(lat=a, rounds=rounds, run_id="job")
    cur = _entry(lat=b, rounds=rounds, run_id="job")
    paired = gate.compare_latency(base, cur, Rules(max_slowdown=0.05))
    assert paired.outcome == "regression" and paired.test.startswith("sign test")
    logs = np.log(np.array(b) / np.array(a))
    positive = int((logs > 0).sum())  # the sign test: how many rounds were slower
    assert paired.p_value == pytest.approx(sps.binomtest(positive, 20).pvalue)
    assert paired.change == pytest.approx(math.exp(np.median(logs)) - 1)
    unpaired = gate.compare_latency(base, cur, Rules(max_slowdown=0.05, test="mann-whitney"))
    assert unpaired.outcome == "pass"
    other_job = _entry(lat=b, rounds=rounds, run_id="another")
    assert gate.compare_latency(base, other_job, Rules()).test == "mann-whitney"


def test_without_raw_samples_intervals_must_not_overlap():
    base = Entry("k", "k", latency_ms={"median": 100, "ci_low": 95, "ci_high": 105, "n": 5})
    apart = Entry("k", "k", latency_ms={"median": 130, "ci_low": 120, "ci_high": 140, "n": 5})
    overlap = Entry("k", "k", latency_ms={"median": 130, "ci_low": 100, "ci_high": 160, "n": 5})
    assert gate.compare_latency(base, apart, Rules()).outcome == "regression"
    check = gate.compare_latency(base, overlap, Rules())
    assert check.outcome == "pass" and check.test == "ci-overlap"


def test_speedup_mode_compares_gains_over_each_runs_reference():
    base = Entry("k", "k", strategy="steps:n=10",
                 speedup={"ratio": 2.4, "ci_low": 2.2, "ci_high": 2.6})
    lost = Entry("k", "k", strategy="steps:n=10", speedup={"ratio": 1.5, "ci_low": 1.4, "ci_high": 1.6})
    wobbly = Entry("k", "k", strategy="steps:n=10", speedup={"ratio": 2.0, "ci_low": 1.7, "ci_high": 2.4})
    rules = Rules(latency="speedup", max_slowdown=0.10)
    check = gate.compare_speedup(base, lost, rules)
    assert check.outcome == "regression" and check.change == pytest.approx(1.5 / 2.4 - 1)
    assert gate.compare_speedup(base, wobbly, rules).outcome == "pass"


# -- quality ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rule,base,cur,outcome", [
    ("psnr:-1", 30.0, 28.5, "regression"),
    ("psnr:-1", 30.0, 29.5, "pass"),
    ("psnr:1", 30.0, 28.5, "regression"),
    ("psnr:-1", math.inf, math.inf, "pass"),
    ("psnr:-1", math.inf, 45.0, "regression"),
    ("fid:+10%", 40.0, 45.0, "regression"),
    ("fid:+10%", 40.0, 43.0, "pass"),
    ("fid:+10%", 40.0, 30.0, "improved"),
])
def test_quality_deltas_follow_the_declared_direction(rule, base, cur, outcome):
    name = rule.split(":")[0]
    check = gate.compare_quality(_entry(quality={name: base}), _entry(quality={name: cur}),
                                 QualityRule.parse(rule))
    assert check.outcome == outcome


def test_direction_comes_from_the_records_not_from_a_list():
    meta = {"psnr": {"higher_is_better": False}}  # a record that says lower is better
    check = gate.compare_quality(_entry(quality={"psnr": 30.0}, meta=meta),
                                 _entry(quality={"psnr": 28.0}, meta=meta), QualityRule.parse("psnr:1"))
    assert check.outcome == "improved"


def test_bound_rules_need_no_baseline():
    verdict = gate.gate([_entry(quality={"adherence": 0.6})], None, Rules(quality=(QualityRule.parse("adherence>=0.7"),)))
    assert verdict.exit_code == 1
    verdict = gate.gate([_entry(quality={"adherence": 0.8})], None, Rules(quality=(QualityRule.parse("adherence>=0.7"),)))
    assert verdict.exit_code == 0


def test_stale_quality_baseline_is_an_error_not_a_regression():
    base = _entry(quality={"psnr": 30.0}, fingerprint="aaaa")
    cur = _entry(quality={"psnr": 20.0}, fingerprint="bbbb")
    verdict = gate.gate([cur], [base], Rules(latency="off", quality=(QualityRule.parse("psnr:-1"),)))
    assert verdict.exit_code == 2 and "stale" in verdict.errors[0].reason


# -- verdict ---------------------------------------------------------------------------------
def test_verdict_matches_by_key_and_reports_unmatched():
    base = [_entry("a", lat=_lat(0.1, seed=1)), _entry("b", lat=_lat(0.1, seed=2))]
    cur = [_entry("a", lat=_lat(0.13, seed=3)), _entry("c")]
    verdict = gate.gate(cur, base, Rules())
    assert verdict.exit_code == 1 and [c.key for c in verdict.regressions] == ["a"]
    assert verdict.baseline_only == ["b"] and verdict.current_only == ["c"]
    doc = verdict.as_dict()
    assert doc["schema"] == gate.VERDICT_SCHEMA and doc["verdict"] == "regression"
    json.dumps(doc)
    table = gate.format_table(verdict)
    assert "REGRESSION" in table and table.splitlines()[-1].startswith("FAIL")


def test_nothing_to_compare_and_unknown_metrics_are_usage_errors():
    with pytest.raises(GateError, match="nothing to compare"):
        gate.gate([_entry("a")], [_entry("b")], Rules())
    with pytest.raises(GateError, match="no input measured 'lpips'"):
        gate.gate([_entry("a")], [_entry("a")], Rules(quality=(QualityRule.parse("lpips:-0.1"),)))


def test_a_stack_that_stopped_working_is_a_regression():
    base = _entry("a")
    cur = Entry("a", "a", status="failed", error="RuntimeError: boom")
    verdict = gate.gate([cur], [base], Rules())
    assert verdict.exit_code == 1 and verdict.regressions[0].kind == "status"


# -- readers ---------------------------------------------------------------------------------
def _record(strategy, lat, quality, speedup=None, fp="f00d"):
    rec = {
        "run_id": "r1", "model": {"name": "digits-unet", "base_fingerprint": fp},
        "strategy": strategy, "status": "ok",
        "settings": {"device": "cpu", "batch_size": 2, "steps": 25},
        "timing": {"latencies_s": lat},
        "stats": {"latency_ms": {"median": float(np.median(lat)) * 1000}},
        "quality": quality, "quality_meta": META,
    }
    if speedup:
        rec["stats"]["speedup"] = speedup
    return rec


def test_run_directory_reader(tmp_path):
    results.append(tmp_path, _record("baseline", _lat(0.2), {"psnr": math.inf, "fid": 40.0}))
    results.append(tmp_path, _record("steps:n=10", _lat(0.1), {"psnr": 30.0, "fid": 42.0},
                                     {"ratio": 2.0, "ci_low": 1.9, "ci_high": 2.1}))
    entries = {e.key: e for e in gate.read_entries(tmp_path)}
    assert set(entries) == {"digits-unet | baseline | b=2", "digits-unet | steps:n=10 | b=2"}
    e = entries["digits-unet | steps:n=10 | b=2"]
    assert e.speedup["ratio"] == 2.0 and e.fingerprint == "f00d"
    assert entries["digits-unet | baseline | b=2"].quality["psnr"] == math.inf  # "inf" string back


def test_speedup_is_derived_when_a_run_did_not_record_it(tmp_path):
    results.append(tmp_path, _record("baseline", _lat(0.2, seed=1), {}))
    results.append(tmp_path, _record("bf16", _lat(0.1, seed=2), {}))
    e = {e.strategy: e for e in gate.read_entries(tmp_path / "results.jsonl")}["bf16"]
    assert e.speedup["ratio"] == pytest.approx(np.median(_lat(0.2, seed=1)) / np.median(_lat(0.1, seed=2)))


def test_baseline_file_round_trip(tmp_path):
    results.append(tmp_path, _record("baseline", _lat(0.2), {"psnr": math.inf}))
    entries = gate.read_entries(tmp_path)
    path = gate.save_baseline(entries, tmp_path / "base.json", note="test")
    again = gate.read_entries(path)
    assert [e.key for e in again] == [e.key for e in entries]
    assert again[0].latencies_s == entries[0].latencies_s and again[0].quality["psnr"] == math.inf
    assert json.loads(path.read_text())["schema"] == gate.BASELINE_SCHEMA


def test_unreadable_inputs_are_usage_errors(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(GateError, match="not a run directory"):
        gate.read_entries(tmp_path / "x.json")
    (tmp_path / "d").mkdir()
    with pytest.raises(GateError, match="without results.jsonl"):
        gate.read_entries(tmp_path / "d")


BENCH_MODULE = """
import time

def test_fast(benchmark):
    benchmark.extra_info.update({"model": "m", "strategy": "baseline",
                                 "settings": {"batch_size": 1},
                                 "quality": {"psnr": "inf"},
                                 "quality_meta": {"psnr": {"higher_is_better": True}}})
    benchmark.pedantic(time.sleep, args=(0.002,), rounds=8, warmup_rounds=1)
"""


def test_reads_real_pytest_benchmark_output(pytester):
    """Raw samples from --benchmark-json; intervals from quartiles in a save without data."""
    pytester.makepyfile(test_b=BENCH_MODULE)
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--benchmark-enable",
                                       "--benchmark-json=out.json", "--benchmark-save=nodata",
                                       "--benchmark-storage=file://store")
    res.assert_outcomes(passed=1)
    [entry] = gate.read_entries(pytester.path / "out.json")
    assert entry.key == "m | baseline | b=1" and len(entry.latencies_s) == 8
    assert all(t >= 0.002 for t in entry.latencies_s) and entry.quality["psnr"] == math.inf
    [saved] = pytester.path.joinpath("store").rglob("*nodata.json")
    [no_data] = gate.read_entries(saved)
    assert no_data.latencies_s is None and no_data.latency_ms["ci_method"].startswith("notch")
    assert gate.gate([entry], [no_data], Rules()).checks[0].test == "ci-overlap"


# -- command line ----------------------------------------------------------------------------
def _files(tmp_path, slow=1.0, psnr=30.0):
    for name, factor, q in (("base", 1.0, 30.0), ("cur", slow, psnr)):
        results.append(tmp_path / name, _record("baseline", _lat(0.2, seed=1), {"psnr": math.inf}))
        results.append(tmp_path / name, _record("steps:n=10", _lat(0.1 * factor, seed=2), {"psnr": q}))
    return str(tmp_path / "cur"), str(tmp_path / "base")


def test_cli_pass_regression_and_usage_error(tmp_path):
    runner = CliRunner()
    cur, base = _files(tmp_path / "same")
    res = runner.invoke(main, ["gate", cur, "--baseline", base, "-Q", "psnr:-1",
                               "--json", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "v.json").read_text())["verdict"] == "pass"
    cur, base = _files(tmp_path / "slow", slow=1.3)
    res = runner.invoke(main, ["gate", cur, "--baseline", base])
    assert res.exit_code == 1 and "REGRESSION" in res.output
    cur, base = _files(tmp_path / "blurry", psnr=27.0)
    res = runner.invoke(main, ["gate", cur, "--baseline", base, "-Q", "psnr:-1"])
    assert res.exit_code == 1 and "psnr worse by 3" in res.output
    assert runner.invoke(main, ["gate", cur, "--baseline", base, "-Q", "psnr:+1"]).exit_code == 2
    assert runner.invoke(main, ["gate", cur, "--baseline", base, "--max-slowdown", "ten"]).exit_code == 2
    assert runner.invoke(main, ["gate"]).exit_code == 2


def test_inject_slowdown_spins_for_the_given_fraction():
    from tests.support.slowdown import inject_slowdown

    class Model:
        notes: dict = {}

        def generate(self):
            time.sleep(0.05)
            return "images"

    model = inject_slowdown(Model(), 0.5)
    t0 = time.perf_counter()
    assert model.generate() == "images"
    assert time.perf_counter() - t0 >= 0.05 * 1.5
    assert model.notes["injected_slowdown"] == 0.5


def test_speedup_change_reads_as_the_speedups_own_change():
    """A speedup that rose shows a positive change, against a limit on the drop."""
    base = Entry("k", "k", strategy="steps:n=10", speedup={"ratio": 2.36, "ci_low": 2.3, "ci_high": 2.4})
    cur = Entry("k", "k", strategy="steps:n=10", speedup={"ratio": 2.44, "ci_low": 2.4, "ci_high": 2.5})
    check = gate.compare_speedup(base, cur, Rules(max_slowdown=0.10))
    assert check.change == pytest.approx(2.44 / 2.36 - 1) and check.change > 0
    assert check.limit == "-9.1%"
    assert "+3.4%" in gate.format_table(gate.gate_pairs([(base, cur)], Rules(latency="speedup")))


def test_a_run_whose_matched_entries_give_no_check_is_a_usage_error():
    base = Entry("m | baseline | b=2", "baseline", strategy="baseline")
    with pytest.raises(GateError, match="nothing was checked"):
        gate.gate([base], [base], Rules(latency="speedup"))


@pytest.mark.slow
def test_run_then_gate_against_a_saved_baseline(tmp_path):
    """The real model, tiny: an interleaved run, its baseline file, the gate against it, and
    the candidate-vs-reference form (slow: loads the model, scores FID)."""
    runner = CliRunner()
    out, base_file = tmp_path / "run", tmp_path / "baseline.json"
    res = runner.invoke(main, [
        "run", "-s", "steps:n=1", "--steps", "2", "-b", "1", "--iterations", "6",
        "--min-seconds", "0", "--warmup", "1", "-q", "4", "--out", str(out), "--quiet",
        "--threads", "1", "--no-report", "--schedule", "interleaved",
    ])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["gate", str(out), "--save-baseline", str(base_file)])
    assert res.exit_code == 0 and base_file.exists(), res.output
    records = list(results.iter_records(out))
    assert [r["strategy"] for r in records] == ["baseline", "steps:n=1"]
    assert [len(r["timing"]["latencies_s"]) for r in records] == [6, 6]
    assert records[1]["timing"]["rounds"] == [0, 1, 2, 3, 4, 5]
    assert records[1]["stats"]["speedup"]["method"].startswith("paired")
    assert records[0]["quality"]["psnr"] == "inf" and records[1]["quality_meta"]["psnr"]["higher_is_better"]
    res = runner.invoke(main, ["gate", str(out), "--baseline", str(base_file), "--latency", "speedup",
                               "-Q", "psnr:-0.5", "-Q", "adherence:-0.1"])
    assert res.exit_code == 0, res.output
    assert "steps:n=1 | b=1  speedup" in res.output
    res = runner.invoke(main, ["gate", str(out), "--reference-strategy", "baseline", "-Q", "ssim>=0"])
    assert res.exit_code == 0 and "steps:n=1 vs baseline" in res.output, res.output


# -- no silent wrong number: NaN quality, settings that differ --------------------------------
@pytest.mark.parametrize("current", [{"psnr": math.nan}, {}])
def test_nan_or_missing_quality_after_a_finite_baseline_is_a_regression(current):
    """A metric that stops being a number is a regression, not a skipped check."""
    base = _entry(quality={"psnr": 31.0, "fid": 3.0})
    cur = _entry(quality={"fid": 3.0, **current})
    verdict = gate.gate([cur], [base], Rules(latency="off", quality=(QualityRule.parse("psnr:-1"),)))
    assert verdict.exit_code == 1, gate.format_table(verdict)
    check = verdict.regressions[0]
    assert check.metric == "psnr" and ("NaN" if current else "missing") in check.reason


def test_nan_against_a_bound_is_a_regression_and_absent_on_both_sides_is_skipped():
    rules = Rules(latency="off", quality=(QualityRule.parse("adherence>=0.7"),))
    verdict = gate.gate([_entry(quality={"adherence": math.nan})], None, rules)
    assert verdict.exit_code == 1 and "cannot hold" in verdict.regressions[0].reason
    check = gate.compare_quality(_entry(quality={}), _entry(quality={}), QualityRule.parse("psnr:-1"))
    assert check.outcome == "skipped" and "nor in the baseline" in check.reason


@pytest.mark.parametrize("name,a,b", [
    ("steps", 25, 10), ("resolution", [16, 16], [32, 32]), ("load_dtype", "fp32", "bf16"),
    ("threads", 1, 2), ("quality_images", 16, 200), ("device", "cpu", "cuda"),
])
def test_settings_that_differ_are_refused_naming_them(name, a, b):
    base = _entry(quality={"psnr": 30.0}, settings={name: a, "batch_size": 2})
    cur = _entry(quality={"psnr": 30.0}, settings={name: b, "batch_size": 2})
    rules = Rules(quality=(QualityRule.parse("psnr:-1"),))
    verdict = gate.gate([cur], [base], rules)
    assert verdict.exit_code == 2
    assert name in verdict.errors[0].reason and "--allow-settings-change" in verdict.errors[0].reason
    allowed = gate.gate([cur], [base], Rules(quality=rules.quality, allow_settings_change=True))
    assert allowed.exit_code == 0 and any(name in n for n in allowed.notes)


def test_another_batch_size_of_the_same_stack_is_named_not_left_unchecked():
    base = _entry("m | s | b=2", model="m", strategy="s", settings={"batch_size": 2})
    cur = _entry("m | s | b=4", model="m", strategy="s", settings={"batch_size": 4})
    verdict = gate.gate([cur], [base], Rules())
    assert verdict.exit_code == 2 and "batch_size (baseline 2, current 4)" in verdict.errors[0].reason
    assert verdict.baseline_only == [] and verdict.current_only == []


def test_cli_refuses_other_settings_unless_allowed(tmp_path):
    runner = CliRunner()
    cur, base = _files(tmp_path / "steps")
    for run, steps in ((cur, 10), (base, 25)):
        path = results.results_path(run)
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        with open(path, "w") as fh:
            for r in rows:
                r["settings"] = {**r.get("settings", {}), "steps": steps}
                fh.write(json.dumps(r) + "\n")
    res = runner.invoke(main, ["gate", cur, "--baseline", base, "-Q", "psnr:-1"])
    assert res.exit_code == 2 and "steps (baseline 25, current 10)" in res.output, res.output
    res = runner.invoke(main, ["gate", cur, "--baseline", base, "-Q", "psnr:-1", "--allow-settings-change"])
    assert res.exit_code == 0, res.output


def test_floor_rule_takes_the_bound_from_the_runs_reference(tmp_path):
    """``fid<=floor``: the gate reads the one rule grammar tune reads; the bound is the run
    reference's FID plus two noise-floor standard deviations recorded with it."""
    base = _record("baseline", _lat(0.2), {"fid": 2.0})
    base["quality_noise_floor"] = {"fid": {"mean": 1.9, "std": 0.1, "images": 200}}
    results.append(tmp_path, base)
    results.append(tmp_path, _record("bf16", _lat(0.1), {"fid": 2.15}))
    results.append(tmp_path, _record("steps:n=4", _lat(0.05), {"fid": 2.6}))
    rule = QualityRule.parse("fid<=floor")
    verdict = gate.gate(gate.read_entries(tmp_path), None, Rules(latency="off", quality=(rule,)))
    outcome = {c.key.split(" | ")[1]: c for c in verdict.checks}
    assert outcome["bf16"].outcome == "pass" and outcome["bf16"].limit == "fid<=floor (<=2.2)"
    assert outcome["steps:n=4"].outcome == "regression" and "not <= 2.2" in outcome["steps:n=4"].reason
    with pytest.raises(GateError, match="lower-is-better.*fid<=floor"):
        QualityRule.parse("fid>=floor")


def test_floor_rule_without_a_recorded_noise_floor_is_skipped_saying_why(tmp_path):
    results.append(tmp_path, _record("baseline", _lat(0.2), {"fid": 2.0}))
    results.append(tmp_path, _record("bf16", _lat(0.1), {"fid": 2.15}))
    verdict = gate.gate(gate.read_entries(tmp_path), None,
                        Rules(latency="off", quality=(QualityRule.parse("fid<=floor"),)))
    assert {c.outcome for c in verdict.checks} == {"skipped"}
    assert "no noise floor" in verdict.checks[0].reason
