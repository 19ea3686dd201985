"""``accelbench history add/list/show`` and ``run --history``: output, idempotence, errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bench.cli import main
from tests.bench.history.synthetic import commit_hex, make_run


def _cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_add_twice_then_list(tmp_path):
    store = tmp_path / "h.sqlite"
    a = make_run(tmp_path / "a", commit=commit_hex(1))
    b = make_run(tmp_path / "b", commit=commit_hex(2), seed=1)
    res = _cli("history", "add", a, b, "--store", store)
    assert res.exit_code == 0, res.output
    assert "points, commit 0000000000" in res.output and "2 runs" in res.output
    again = _cli("history", "add", a, "--store", store)
    assert again.exit_code == 0 and "already there" in again.output and "2 runs" in again.output
    listed = _cli("history", "list", "--store", store, "--metric", "speedup")
    assert listed.exit_code == 0
    lines = listed.output.strip().splitlines()
    assert lines[0].split()[:3] == ["points", "first", "last"]
    assert len(lines) == 2 and "digits-unet | steps:n=10 |" in lines[1] and lines[1].split()[0] == "2"
    assert _cli("history", "series", "--store", store).exit_code == 0


def test_the_store_defaults_to_the_environment_variable(tmp_path):
    store = tmp_path / "env.sqlite"
    run = make_run(tmp_path / "a", commit=commit_hex(1))
    res = _cli("history", "add", run, env={"ACCELBENCH_HISTORY": f"sqlite:///{store}"})
    assert res.exit_code == 0 and store.exists()


def test_a_commit_can_be_given(tmp_path):
    store = tmp_path / "h.sqlite"
    run = make_run(tmp_path / "a", commit=commit_hex(1))
    res = _cli("history", "add", run, "--store", store, "--commit", "f" * 40)
    assert res.exit_code == 0 and "commit ffffffffff" in res.output


@pytest.mark.parametrize("args, message", [
    (["history", "add", "{tmp}/nothing"], "not a run directory"),
    (["history", "list", "--store", "{tmp}/none.sqlite"], "no history store"),
    (["history", "add", "{run}", "--store", "nosuchdb://u:topsecret@h/db"], "cannot open"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    run = make_run(tmp_path / "r", commit=commit_hex(1))
    args = [a.format(tmp=tmp_path, run=run) for a in args]
    res = _cli(*args, "--store", tmp_path / "h.sqlite") if "--store" not in args else _cli(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert "topsecret" not in res.output and "Traceback" not in res.output


def test_help_texts_have_examples():
    for cmd in (["history"], ["history", "add"], ["history", "backfill"], ["history", "show"],
                ["gate"]):
        res = _cli(*cmd, "--help")
        assert res.exit_code == 0 and "Examples" in res.output
    assert "--history" in _cli("run", "--help").output


def test_run_history_with_a_bad_store_fails_before_measuring(tmp_path):
    res = _cli("run", "-s", "steps:n=2", "--history", "nosuchdb://u:pw123@h/db",
               "-o", tmp_path / "run")
    assert res.exit_code == 2 and "cannot open" in res.output and "pw123" not in res.output
    assert not (tmp_path / "run").exists()


def test_show_writes_a_page(tmp_path):
    store = tmp_path / "h.sqlite"
    for i in range(4):
        _cli("history", "add", make_run(tmp_path / f"r{i}", commit=commit_hex(i), seed=i),
             "--store", store)
    res = _cli("history", "show", "--store", store, "--out", tmp_path / "pages",
               "--commit-url", "https://example.com/c/{commit}")
    assert res.exit_code == 0, res.output
    index = tmp_path / "pages" / "index.html"
    assert index.is_file() and str(index) in res.output
    assert "https://example.com/c/" + commit_hex(3) in "".join(
        p.read_text() for p in (tmp_path / "pages").rglob("*.html"))
    res = _cli("history", "show", "--store", store, "--out", tmp_path / "p2", "-m", "nope")
    assert res.exit_code == 2 and "no points" in res.output


@pytest.mark.slow
def test_run_history_files_a_real_run(tmp_path):
    store = tmp_path / "h.sqlite"
    res = _cli("run", "-s", "steps:n=2", "--steps", "4", "-b", "1", "-n", "3", "--warmup", "1",
               "--min-seconds", "0", "-q", "4", "--threads", "1", "--no-flops", "--no-report",
               "--quiet", "-o", tmp_path / "run", "--history", store)
    assert res.exit_code == 0, res.output
    assert "points filed" in res.output
    listed = _cli("history", "list", "--store", store, "--metric", "speedup")
    assert "steps:n=2" in listed.output


def test_a_password_in_the_environment_never_reaches_the_output(tmp_path):
    env = {"ACCELBENCH_HISTORY": "nosuchdb://ci:EnvSecret99@h/db"}
    for cmd in (["history", "add", "--help"], ["history", "list"], ["gate", "--help"]):
        res = _cli(*cmd, env=env)
        assert "EnvSecret99" not in res.output
    run = make_run(tmp_path / "r", commit=commit_hex(1))
    res = _cli("history", "add", run, env=env)
    assert res.exit_code == 2 and "EnvSecret99" not in res.output and "***" in res.output
