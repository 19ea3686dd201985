"""The history store on a real PostgreSQL server (started by the tests: see ``postgres.py``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.core.errors import HistoryError
from bench.history.gate import HistoryRules, gate_history
from bench.history.store import HistoryStore
from tests.bench.history.postgres import PASSWORD, postgres  # noqa: F401 (the fixture)
from tests.bench.history.synthetic import commit_hex, make_run


def test_the_store_on_postgresql(postgres, tmp_path):  # noqa: F811
    url = postgres.new_database()
    store = HistoryStore(url)
    assert PASSWORD not in repr(store) and PASSWORD not in store.shown
    runs = [make_run(tmp_path / f"r{i}", commit=commit_hex(i), seed=i,
                     created=f"2026-01-0{i + 1}T00:00:00+00:00") for i in range(5)]
    first = store.add_run(runs[0])
    assert first.added > 0 and store.add_run(runs[0]).added == 0  # idempotent
    for run in runs[1:]:
        store.add_run(run)
    store.close()
    again = HistoryStore(url, create=False)  # another machine of the team opens it
    sp = again.points(metric="speedup")
    assert sp.commit.tolist() == [commit_hex(i) for i in range(5)]
    assert sp.value.dtype == float and sp.higher_is_better.all()
    assert again.count()[0] == 5
    slow = make_run(tmp_path / "slow", commit=commit_hex(9), seed=9, speedup=1.4)
    verdict = gate_history(again, [slow], HistoryRules(metrics=("speedup",)))
    assert verdict.exit_code == 1
    again.close()


def test_the_same_run_from_two_connections_is_stored_once(postgres, tmp_path):  # noqa: F811
    url = postgres.new_database()
    run = make_run(tmp_path / "r", commit=commit_hex(1))
    a, b = HistoryStore(url), HistoryStore(url)
    assert a.add_run(run).added > 0
    assert b.add_run(run).added == 0
    assert b.count()[0] == 1
    a.close()
    b.close()


def test_a_wrong_password_is_an_error_without_the_password(postgres, tmp_path):  # noqa: F811
    wrong = "Not-The-Pw-7734"
    url = postgres.url(password=wrong)
    with pytest.raises(HistoryError) as info:
        HistoryStore(url)
    message = str(info.value)
    assert wrong not in message and PASSWORD not in message and "\n" not in message
    assert "password authentication failed" in message or "authentication" in message
    run = make_run(tmp_path / "r", commit=commit_hex(1))
    res = CliRunner().invoke(main, ["history", "add", str(run), "--store", url])
    assert res.exit_code == 2 and wrong not in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["gate", str(run), "--history", url])
    assert res.exit_code == 2 and wrong not in res.output
