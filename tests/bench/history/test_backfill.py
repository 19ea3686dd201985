"""``accelbench history backfill``: commit selection, the checked-out tree measured against
the current one, filing under the checked-out commit, resuming, worktrees removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.core.errors import HistoryError
from bench.history import backfill as bf
from bench.history.store import HistoryStore
from tests.bench.history.synthetic import make_run

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com"}


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **ENV}
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository of 7 commits; each commit's ``speed.txt`` says how slow its code is."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    for i in range(7):
        (root / "speed.txt").write_text(str(1.0 + 0.1 * i))
        _git(root, "add", "speed.txt")
        _git(root, "commit", "-q", "-m", f"c{i}", date=f"2026-01-0{i + 1}T12:00:00+02:00")
    return root


def _commits(repo: Path) -> list[str]:
    return _git(repo, "rev-list", "--reverse", "HEAD").split()


class FakeMeasure:
    """Stands in for the interleaved run: the commit's side is as slow as its ``speed.txt``
    says, the current side as the current tree's; records the trees it was given."""

    def __init__(self, stop_at: int | None = None):
        self.calls: list[tuple[Path, Path]] = []
        self.stop_at = stop_at

    def __call__(self, commit_src: Path, current_src: Path, out: Path, cfg) -> Path:
        self.calls.append((commit_src, current_src))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt  # the user (or CI) killed the backfill here
        assert (commit_src / ".git").exists() and commit_src != current_src
        slow = float((commit_src / "speed.txt").read_text())
        now = float((current_src / "speed.txt").read_text())
        head = _git(current_src, "rev-parse", "HEAD")
        make_run(out, commit=head, ref_ms=400 * now, run_id="pair", seed=len(self.calls))
        make_run(out / "baseline", commit=head, ref_ms=400 * slow, run_id="pair",
                 seed=len(self.calls))
        return out


def test_every_nth_counts_back_from_the_last(repo):
    c = _commits(repo)
    assert bf.select_commits(repo, f"{c[0]}..HEAD", 1) == c[1:]
    assert bf.select_commits(repo, f"{c[0]}..HEAD", 3) == [c[3], c[6]]
    assert bf.select_commits(repo, "HEAD~6..HEAD", 4) == [c[2], c[6]]
    with pytest.raises(HistoryError, match="range"):
        bf.select_commits(repo, "HEAD", 1)
    with pytest.raises(HistoryError, match="no commits"):
        bf.select_commits(repo, "HEAD..HEAD", 1)
    with pytest.raises(HistoryError, match="git rev-list"):
        bf.select_commits(repo, "nope..HEAD", 1)


def test_each_commit_is_measured_against_the_current_tree_and_filed_under_itself(repo, tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    fake, lines = FakeMeasure(), []
    c = _commits(repo)
    outcomes = bf.backfill(store, "HEAD~6..HEAD", bf.BackfillConfig(), every=2, repo=repo,
                           measure=fake, log=lines.append)
    assert [o.commit for o in outcomes] == [c[2], c[4], c[6]]
    assert all(o.state == "filed" and o.points > 0 for o in outcomes)
    assert all(cur == repo.resolve() for _, cur in fake.calls)
    assert len(lines) == 6 and lines[0].startswith("[1/3] ")
    rel = store.points(metric="relative_latency", stack="baseline")
    assert rel.commit.tolist() == [c[2], c[4], c[6]]  # the checked-out commits, not HEAD
    # commit i is (1 + 0.1 i) / 1.6 as slow as the current tree (commit 6)
    assert rel.value.tolist() == pytest.approx([1.2 / 1.6, 1.4 / 1.6, 1.0], rel=0.03)
    assert (rel.low <= rel.value).all() and (rel.value <= rel.high).all()
    assert not rel.higher_is_better.any()
    assert rel.commit_date.tolist()[0] == "2026-01-03T10:00:00+00:00"  # committer date, UTC
    lat = store.points(metric="latency_ms", stack="baseline")
    assert lat.value.tolist() == pytest.approx([480, 560, 640], rel=0.05)
    assert _git(repo, "worktree", "list").count("\n") == 0  # only the main one is left
    assert _git(repo, "status", "--porcelain") == ""


def test_a_killed_backfill_resumes_and_leaves_no_worktree(repo, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    store = HistoryStore(tmp_path / "h.sqlite")
    cfg = bf.BackfillConfig(iterations=5)
    with pytest.raises(KeyboardInterrupt):
        bf.backfill(store, "HEAD~4..HEAD", cfg, repo=repo, measure=FakeMeasure(stop_at=3),
                    log=lambda m: None)
    assert _git(repo, "worktree", "list").count("\n") == 0
    assert not list(temp.iterdir())
    again = FakeMeasure()
    outcomes = bf.backfill(store, "HEAD~4..HEAD", cfg, repo=repo, measure=again,
                           log=lambda m: None)
    assert [o.state for o in outcomes] == ["skipped", "skipped", "filed", "filed"]
    assert len(again.calls) == 2
    # another configuration is another series of runs: measured again
    other = bf.backfill(store, "HEAD~1..HEAD", bf.BackfillConfig(iterations=6), repo=repo,
                        measure=FakeMeasure(), log=lambda m: None)
    assert [o.state for o in other] == ["filed"]


def test_a_commit_that_fails_is_reported_and_the_rest_go_on(repo, tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    fake = FakeMeasure()

    def flaky(commit_src, current_src, out, cfg):
        if float((commit_src / "speed.txt").read_text()) == pytest.approx(1.5):
            raise RuntimeError("this tree cannot run the model\nsecond line")
        return fake(commit_src, current_src, out, cfg)

    outcomes = bf.backfill(store, "HEAD~3..HEAD", bf.BackfillConfig(), repo=repo, measure=flaky,
                           log=lambda m: None)
    assert [o.state for o in outcomes] == ["filed", "failed", "filed"]
    assert outcomes[1].reason == "RuntimeError: this tree cannot run the model"


def test_the_cli_runs_the_backfill_and_kept_runs_stay(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(bf, "measure_commit", FakeMeasure())
    monkeypatch.chdir(repo)
    store = tmp_path / "h.sqlite"
    res = CliRunner().invoke(main, ["history", "backfill", "--commits", "HEAD~6..HEAD",
                                    "--every", "3", "--store", str(store), "-s", "steps:n=10",
                                    "--runs", str(tmp_path / "kept")])
    assert res.exit_code == 0, res.output
    assert "2 filed, 0 already there, 0 failed" in res.output
    assert len(list((tmp_path / "kept").iterdir())) == 2
    res = CliRunner().invoke(main, ["history", "backfill", "--commits", "HEAD~6..HEAD",
                                    "--every", "3", "--store", str(store), "-s", "steps:n=10"])
    assert "0 filed, 2 already there" in res.output


@pytest.mark.slow
def test_a_real_backfill_of_this_repository(tmp_path):
    """Two commits of a clone of this repository, each measured against the clone's tree
    with the real engine (tiny settings: it checks the plumbing, not the figures)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    here = Path(__file__).resolve().parents[3]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(here), str(clone)], check=True)
    store = HistoryStore(tmp_path / "h.sqlite")
    cfg = bf.BackfillConfig(strategies=("steps:n=2",), steps=4, batch_size=1, iterations=3,
                            warmup=1, quality_images=4, threads=1)
    lines: list[str] = []
    outcomes = bf.backfill(store, "HEAD~1..HEAD", cfg, repo=clone, log=lines.append)
    assert [o.state for o in outcomes] == ["filed"], lines
    rel = store.points(metric="relative_latency")
    assert set(rel["stack"]) == {"baseline", "steps:n=2"}
    head = _git(clone, "rev-parse", "HEAD")
    assert set(store.points().commit) == {head}
    assert 0.5 < rel.value.min() and rel.value.max() < 2.0  # the same code, give or take noise


def test_worktrees_a_killed_backfill_left_are_removed(repo, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    left = temp / (bf.TEMP_PREFIX + "x") / "src"  # as a SIGKILL leaves it: no finally ran
    _git(repo, "worktree", "add", "-q", "--detach", str(left), "HEAD~1")
    assert _git(repo, "worktree", "list").count("\n") == 1
    store = HistoryStore(tmp_path / "h.sqlite")
    bf.backfill(store, "HEAD~1..HEAD", bf.BackfillConfig(), repo=repo, measure=FakeMeasure(),
                log=lambda m: None)
    assert _git(repo, "worktree", "list").count("\n") == 0
    assert not list(temp.iterdir())
