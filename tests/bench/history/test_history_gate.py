"""``accelbench gate --history``: a loss is caught, A/A points raise no alarm, creep."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.history.gate import HistoryRules, format_history, gate_history
from bench.history.store import HistoryStore
from tests.bench.history.synthetic import commit_hex, make_run


def _date(i: int) -> str:
    return f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"


def _seeded(tmp_path, n: int = 8, speedup: float = 2.0, **kw) -> HistoryStore:
    store = HistoryStore(tmp_path / "h.sqlite")
    for i in range(n):
        store.add_run(make_run(tmp_path / f"aa{i}", commit=commit_hex(i), seed=i,
                               speedup=speedup, created=_date(i), **kw))
    return store


def _gate(*args: str):
    return CliRunner().invoke(main, ["gate", *map(str, args)])


def test_a_30_percent_speedup_loss_is_caught(tmp_path):
    store = _seeded(tmp_path)
    slow = make_run(tmp_path / "new", commit=commit_hex(100), seed=100, speedup=1.4)
    verdict = gate_history(store, [slow], HistoryRules(threshold=0.10, metrics=("speedup",)))
    assert verdict.exit_code == 1
    (only,) = verdict.series
    assert only.verdict == "regression" and only.history_points == 8
    assert "speedup" in only.series and "regression" in format_history(verdict)
    res = _gate(slow, "--history", tmp_path / "h.sqlite", "--max-slowdown", "10%",
                "--json", tmp_path / "v.json")
    assert res.exit_code == 1, res.output
    assert "regression" in res.output
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["exit_code"] == 1 and any(s["verdict"] == "regression" for s in doc["series"])


def test_ten_aa_points_in_a_row_raise_no_alarm(tmp_path):
    store = _seeded(tmp_path, n=4)
    for i in range(4, 14):  # each new A/A run gated against what came before, then filed
        run = make_run(tmp_path / f"aa{i}", commit=commit_hex(i), seed=i, created=_date(i))
        verdict = gate_history(store, [run], HistoryRules(threshold=0.10, creep=0.05))
        assert verdict.exit_code == 0, format_history(verdict)
        assert {s.verdict for s in verdict.series} <= {"pass", "insufficient"}
        store.add_run(run)
    assert sum(s.verdict == "pass" for s in verdict.series) >= 5


def test_a_quality_loss_is_caught_with_its_own_threshold(tmp_path):
    store = _seeded(tmp_path)
    worse = make_run(tmp_path / "new", commit=commit_hex(100), seed=100, psnr=25.0)
    verdict = gate_history(store, [worse], HistoryRules(metrics=("psnr",)))
    assert [s.verdict for s in verdict.series] == ["regression"]
    lenient = gate_history(store, [worse], HistoryRules(metrics=("psnr",), quality_threshold=0.5))
    assert lenient.exit_code == 0


def test_creep_over_the_window_is_flagged(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    for i in range(10):  # 1% worse per commit: no step, 9% over the window
        store.add_run(make_run(tmp_path / f"c{i}", commit=commit_hex(i), seed=i,
                               speedup=2.0 * 0.99 ** i, noise=0.002, created=_date(i)))
    new = make_run(tmp_path / "new", commit=commit_hex(50), seed=50, speedup=2.0 * 0.99 ** 10,
                   noise=0.002)
    rules = HistoryRules(threshold=0.30, metrics=("speedup",), creep=0.05, creep_window=8)
    verdict = gate_history(store, [new], rules)
    assert [s.verdict for s in verdict.series] == ["creep"], format_history(verdict)
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--max-slowdown", "30%",
                "--metric", "speedup", "--creep", "5%", "--creep-window", "8")
    assert res.exit_code == 1 and "creep" in res.output


def test_another_machine_is_compared_only_when_asked(tmp_path):
    _seeded(tmp_path, cpu="CPU of the seed")
    new = make_run(tmp_path / "new", commit=commit_hex(100), seed=100, cpu="CI runner CPU")
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--metric", "speedup")
    assert res.exit_code == 2 and "nothing to compare" in res.output
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--metric", "speedup", "--any-machine")
    assert res.exit_code == 0, res.output
    assert "any machine" in res.output


def test_usage_errors(tmp_path):
    _seeded(tmp_path, n=2)
    new = make_run(tmp_path / "new", commit=commit_hex(100), seed=100)
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--baseline", new)
    assert res.exit_code == 2 and "--history judges against the store alone" in res.output
    res = _gate(new, "--creep", "5%", "--baseline", new)
    assert res.exit_code == 2 and "go with --history" in res.output
    res = _gate(new, "--history", tmp_path / "missing.sqlite")
    assert res.exit_code == 2 and "no history store" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--metric", "nope")
    assert res.exit_code == 2 and "no measured point" in res.output


@pytest.mark.parametrize("n", [1, 2])
def test_short_history_is_insufficient_not_a_failure(tmp_path, n):
    _seeded(tmp_path, n=n)
    new = make_run(tmp_path / "new", commit=commit_hex(100), seed=100, speedup=1.0)
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--metric", "speedup")
    assert res.exit_code == 0 and "insufficient" in res.output


@pytest.mark.parametrize("factor, code", [(0.7, 1), (0.85, 0)])
def test_max_slowdown_means_slower_by_as_in_the_baseline_gate(tmp_path, factor, code):
    """--max-slowdown 30%: a speedup 30% lower (43% slower) fails; 15% lower (18% slower)
    is within it, though outside the prediction."""
    _seeded(tmp_path, speedup=2.5)
    new = make_run(tmp_path / "new", commit=commit_hex(100), seed=100, speedup=2.5 * factor)
    res = _gate(new, "--history", tmp_path / "h.sqlite", "--metric", "speedup",
                "--max-slowdown", "30%")
    assert res.exit_code == code, res.output
    assert HistoryRules(threshold=0.3).threshold_of("speedup", True) == pytest.approx(1 - 1 / 1.3)
    assert HistoryRules(threshold=0.3).threshold_of("latency_ms", False) == 0.3


def test_a_run_already_in_the_store_is_not_its_own_history(tmp_path):
    store = _seeded(tmp_path)
    slow = make_run(tmp_path / "new", commit=commit_hex(100), seed=100, speedup=1.4,
                    created=_date(50))
    store.add_run(slow)  # `run --history` filed it before the gate ran
    verdict = gate_history(store, [slow], HistoryRules(metrics=("speedup",)))
    assert [s.history_points for s in verdict.series] == [8]
    assert verdict.exit_code == 1


def test_the_baseline_gate_is_unchanged_without_history(tmp_path):
    a = make_run(tmp_path / "a", commit=commit_hex(1), seed=1)
    b = make_run(tmp_path / "b", commit=commit_hex(2), seed=2, speedup=1.4)
    assert _gate(a, "--baseline", a, "--latency", "speedup").exit_code == 0
    res = _gate(b, "--baseline", a, "--latency", "speedup", "--max-slowdown", "10%")
    assert res.exit_code == 1, res.output
