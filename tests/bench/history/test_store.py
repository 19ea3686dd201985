"""The history store on SQLite: what a run files, idempotence, filters, bad input."""

from __future__ import annotations

import json
import math

import pytest

from bench.core import results
from bench.core.errors import HistoryError
from bench.history.points import SEP, Machine, settings_key
from bench.history.store import POINT_COLUMNS, HistoryStore, safe_url
from tests.bench.history.synthetic import MACHINE_KEY, commit_hex, make_run


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(tmp_path / "h.sqlite")
    yield s
    s.close()


def test_a_run_files_every_metric_of_every_record(store, tmp_path):
    run = make_run(tmp_path / "r1", commit=commit_hex(1), speedup=2.0)
    res = store.add_run(run)
    frame = store.points()
    assert list(frame.columns) == list(POINT_COLUMNS)
    assert res.added == len(frame) and res.skipped == 0 and res.commit == commit_hex(1)
    cand = frame[frame["stack"] == "steps:n=10"].set_index("metric")
    assert {"latency_ms", "speedup", "energy_j_per_image", "peak_memory_mb", "psnr", "ssim",
            "adherence", "fid", "kid"} <= set(cand.index)
    assert "kid_std" not in cand.index  # kid's spread, filed as kid's interval
    kid = cand.loc["kid"]
    assert kid.low == pytest.approx(0.5 - 1.96 * 0.25) and kid.high == pytest.approx(0.5 + 1.96 * 0.25)
    sp = cand.loc["speedup"]
    assert sp.low < sp.value < sp.high and sp.value == pytest.approx(2.0, rel=0.05)
    assert sp.higher_is_better and not cand.loc["latency_ms"].higher_is_better
    assert math.isnan(cand.loc["energy_j_per_image"].low)
    assert cand.loc["fid"].higher_is_better is False or not cand.loc["fid"].higher_is_better
    ref = frame[frame["stack"] == "baseline"].set_index("metric")
    assert "speedup" not in ref.index and "psnr" not in ref.index  # reference: none, inf
    row = frame.iloc[0]
    assert row.series == SEP.join([row.model, row.stack, row.machine, row.settings, row.metric])
    assert row.machine == MACHINE_KEY and row.commit == commit_hex(1)
    assert "batch_size=2" in row.settings and "steps=25" in row.settings


def test_adding_a_run_twice_stores_it_once(store, tmp_path):
    run = make_run(tmp_path / "r1", commit=commit_hex(1))
    first = store.add_run(run)
    again = store.add_run(run)
    assert again.added == 0 and again.skipped == first.added and again.run == first.run
    assert store.count() == (1, first.added)
    # a copy of the same records elsewhere is the same run too
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "results.jsonl").write_text((run / "results.jsonl").read_text())
    assert store.add_run(copy).added == 0


def test_the_store_is_append_only_and_reopens(tmp_path):
    path = tmp_path / "h.sqlite"
    s = HistoryStore(path)
    for i in range(3):
        s.add_run(make_run(tmp_path / f"r{i}", commit=commit_hex(i), seed=i))
    n = s.count()
    s.close()
    again = HistoryStore(f"sqlite:///{path}", create=False)
    assert again.count() == n
    assert again.points(metric="speedup").commit.tolist() == [commit_hex(i) for i in range(3)]


def test_points_are_sorted_by_series_then_commit_date(store, tmp_path):
    # added out of order: commit 2 (newest) first
    for i, date in ((2, "2026-01-03T00:00:00+00:00"), (0, "2026-01-01T00:00:00+00:00"),
                    (1, "2026-01-02T00:00:00+00:00")):
        run = make_run(tmp_path / f"r{i}", commit=commit_hex(i), seed=i)
        store.add_run(run, commit_date=date)
    frame = store.points()
    for _, group in frame.groupby("series"):
        assert group.commit_date.is_monotonic_increasing
    assert list(frame.series) == sorted(frame.series)
    sp = store.points(metric="speedup", stack="steps:n=10")
    assert sp.commit.tolist() == [commit_hex(0), commit_hex(1), commit_hex(2)]


def test_filters_take_values_or_lists(store, tmp_path):
    store.add_run(make_run(tmp_path / "a", commit=commit_hex(1), cpu="CPU A"))
    store.add_run(make_run(tmp_path / "b", commit=commit_hex(2), cpu="CPU B"))
    both = store.points(metric=["speedup", "psnr"])
    assert set(both.metric) == {"speedup", "psnr"}
    a = store.points(machine="CPU A, 2 cores", metric="speedup")
    assert len(a) == 1 and a.commit.iloc[0] == commit_hex(1)
    assert store.points(commit=commit_hex(2), metric="speedup").machine.iloc[0] == "CPU B, 2 cores"
    assert store.points(model="nope").empty
    with pytest.raises(HistoryError, match="unknown point filter"):
        store.points(colour="red")
    table = store.series()
    assert {"series", "points", "first", "last"} <= set(table.columns)
    assert (table.points == 1).all()


def test_a_commit_given_overrides_the_records_and_dirty_is_stripped(store, tmp_path):
    run = make_run(tmp_path / "r", commit=commit_hex(5) + "-dirty")
    assert store.add_run(run).commit == commit_hex(5)
    other = make_run(tmp_path / "o", commit=commit_hex(6), seed=1)
    res = store.add_run(other, commit=commit_hex(7), label="backfill:x")
    assert res.commit == commit_hex(7)
    assert store.has_run(commit=commit_hex(7), label="backfill:x")
    assert not store.has_run(commit=commit_hex(7), label="run")


def test_commit_date_falls_back_to_the_run_time(store, tmp_path):
    run = make_run(tmp_path / "r", commit=commit_hex(9), created="2025-05-05T05:05:05+00:00")
    store.add_run(run)
    assert set(store.points().commit_date) == {"2025-05-05T05:05:05+00:00"}


def test_bad_inputs_are_one_line_errors(store, tmp_path):
    with pytest.raises(HistoryError, match="not a run directory"):
        store.add_run(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.jsonl").write_text("")
    with pytest.raises(HistoryError, match="no accelbench records"):
        store.add_run(empty)
    failed = tmp_path / "failed"
    failed.mkdir()
    results.append(failed, {"run_id": "x", "model": {"name": "m"}, "strategy": "baseline",
                            "status": "failed", "error": "boom",
                            "environment": {"git_commit": commit_hex(1)}})
    with pytest.raises(HistoryError, match="no measured record"):
        store.add_run(failed)
    nocommit = tmp_path / "nocommit"
    nocommit.mkdir()
    rec = json.loads((make_run(tmp_path / "src", commit="x") / "results.jsonl").read_text().splitlines()[0])
    rec["environment"].pop("git_commit")
    results.append(nocommit, rec)
    with pytest.raises(HistoryError, match="no git commit"):
        store.add_run(nocommit)
    with pytest.raises(HistoryError, match="no history store"):
        HistoryStore(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()
    with pytest.raises(HistoryError) as info:
        HistoryStore("nosuchdialect://user:hunter2@host/db")
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)


def test_urls_are_shown_without_their_password():
    shown = safe_url("postgresql+psycopg://ci:s3cret@db.example:5432/hist")
    assert "s3cret" not in shown and "ci" in shown and "db.example" in shown
    assert safe_url("h.sqlite") == "sqlite:///h.sqlite"


def test_keys():
    assert Machine.from_environment({"cpu": "X|Y", "cpu_count": 4}).key == "X/Y, 4 cores"
    gpu = Machine.from_environment({"cpu": "X", "cpu_count": 4,
                                    "gpu": {"name": "NVIDIA H200", "driver": "550.1"}})
    assert gpu.key == "X, 4 cores, NVIDIA H200, driver 550.1"
    assert settings_key({"steps": 4, "resolution": [512, 768], "device": "cuda", "x": 1}) == \
        "steps=4, resolution=512x768, device=cuda"
