"""Backfill: measure past commits against the current tree and file each in the history.

For every selected commit of ``git rev-list --reverse A..B`` (every Nth, counted back from the
last, so the last is always measured), the commit is checked out into a temporary
``git worktree`` and measured with the code-against-code path of the engine
(``accelbench run --baseline-src``): every stack runs in two worker processes, one importing
the commit's tree and one the current tree, interleaved round by round. In that path the
**current** side is the candidate (its records go to the run directory itself) and the
**baseline** side is the other tree (``baseline_src``; its records go to ``RUN/baseline``, a
``results.jsonl``-format file).
A backfill passes the checked-out commit as ``baseline_src`` and the current tree as
``current_src``, and files the *baseline* side's records under the checked-out commit
(their own ``environment.git_commit`` names the tree the engine ran in, not the commit).

Each point is therefore measured on the same machine in the same minutes as the current tree:
besides the commit's own figures (latency, speedup over its own reference, quality...), each
stack gets ``relative_latency``: the commit's latency over the current tree's, paired round
by round (>1: the commit was slower than today's tree), with its 95% interval.

A commit already in the store for the same configuration is skipped, so a killed backfill
resumes where it stopped; the worktree is removed whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.core import compare
from bench.core.errors import HistoryError
from bench.core.record import Record
from bench.core.results import read_records, results_path
from bench.history.points import Machine, Point, settings_key
from bench.history.store import HistoryStore, commit_time

Log = Callable[[str], None]
#: Prefix of the temporary folders that hold a commit's worktree (and, unless kept, its run).
TEMP_PREFIX = "accelbench-backfill-"
#: Measures one commit: (commit's tree, current tree, run directory, config) -> run directory.
Measure = Callable[[Path, Path, Path, "BackfillConfig"], Path]


@dataclass(frozen=True)
class BackfillConfig:
    """What each commit is measured with (the options ``accelbench run`` takes)."""

    model: str = "digits-unet"
    strategies: tuple[str, ...] = ("steps:n=10",)
    device: str = "cpu"
    batch_size: int = 2
    steps: int | None = None
    iterations: int = 8
    warmup: int = 2
    min_seconds: float = 0.0
    max_seconds: float = 300.0
    quality_images: int | None = 16
    threads: int | None = 1
    block: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``backfill:<hash>`` of the configuration: commits filed with it are skipped."""
        body = json.dumps(asdict(self), sort_keys=True, default=str)
        return "backfill:" + hashlib.sha256(body.encode()).hexdigest()[:12]


@dataclass
class Outcome:
    """What happened to one commit: ``filed`` (with the points added), ``skipped`` or
    ``failed`` (with the reason)."""

    commit: str
    state: str
    points: int = 0
    reason: str = ""


def git(args: Sequence[str], repo: Path) -> str:
    """Run git in ``repo``; its stdout, or a :class:`HistoryError` with git's message."""
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HistoryError(f"git {' '.join(args)}: {exc}") from None
    if out.returncode != 0:
        msg = (out.stderr.strip().splitlines() or ["failed"])[-1]
        raise HistoryError(f"git {' '.join(args)}: {msg}")
    return out.stdout.strip()


def select_commits(repo: Path, commits: str, every: int = 1) -> list[str]:
    """The full names of the commits of ``A..B`` oldest first, every ``every``-th counted
    back from the last (which is always in)."""
    if every < 1:
        raise HistoryError(f"--every must be 1 or more, got {every}")
    if ".." not in commits:
        raise HistoryError(f"--commits takes a range A..B (e.g. HEAD~12..HEAD), got {commits!r}")
    listed = git(["rev-list", "--reverse", commits], repo).split()
    if not listed:
        raise HistoryError(f"no commits in {commits}")
    return listed[::-1][::every][::-1]


def measure_commit(commit_src: Path, current_src: Path, out: Path, cfg: BackfillConfig) -> Path:
    """Measure ``cfg`` with both trees in one interleaved code-against-code run into ``out``
    (the commit's tree as ``baseline_src``, the current one as ``current_src``)."""
    from bench.core.config import RunConfig, TimingConfig
    from bench.measure.engine import Engine  # lazy: torch loads only when measuring

    config = RunConfig(
        model=cfg.model, strategies=tuple(cfg.strategies), device=cfg.device,
        batch_size=cfg.batch_size, steps=cfg.steps,
        timing=TimingConfig(warmup=cfg.warmup, min_iterations=cfg.iterations,
                            min_seconds=cfg.min_seconds, max_iterations=max(200, cfg.iterations),
                            max_seconds=max(cfg.max_seconds, cfg.min_seconds)),
        quality_images=cfg.quality_images, out_dir=out, schedule="interleaved",
        block=cfg.block, threads=cfg.threads, count_flops=False,
        baseline_src=str(commit_src), current_src=str(current_src), **cfg.extra)
    Engine(config, show_progress=False).run()
    return out


def relative_points(run_dir: Path) -> list[Point]:
    """Each stack's ``relative_latency``: the commit's (``RUN/baseline``) latency over the
    current tree's (``RUN``), paired round by round, with its interval."""
    current = {r.strategy: r for r in read_records(run_dir) if r.ok}
    out = []
    for rec in read_records(run_dir / "baseline"):
        now = current.get(rec.strategy)
        if not rec.ok or now is None or not rec.calls.latencies_s or not now.calls.latencies_s:
            continue
        # compare.speedup(reference, candidate) is reference / candidate: commit / current
        ratio = compare.speedup(_samples(rec), _samples(now))
        if ratio is None:
            continue
        out.append(Point(model=str(rec.model_name), stack=str(rec.strategy),
                         machine=Machine.from_environment(rec.environment).key,
                         settings=settings_key(rec.settings), metric="relative_latency",
                         value=ratio.ratio, low=ratio.ci_low, high=ratio.ci_high, unit="x",
                         higher_is_better=False))
    return out


def _samples(rec: Record) -> compare.Samples:
    calls = rec.calls
    return compare.Samples(latencies_s=calls.latencies_s, batch_size=rec.batch_size,
                           rounds=calls.rounds, run_id=rec.run_id)


def backfill(store: HistoryStore, commits: str, cfg: BackfillConfig, *, every: int = 1,
             repo: Path | None = None, current_src: Path | None = None,
             runs_dir: Path | None = None, measure: Measure | None = None,
             log: Log = print) -> list[Outcome]:
    """Measure every selected commit of ``commits`` (``A..B``) against the current tree and
    file it in ``store``; a progress line per commit through ``log``.

    Args:
        repo: the git repository (default: the working directory's).
        current_src: the current tree (default: the repository's working tree).
        runs_dir: keep each commit's run directory here (default: a temporary one, removed).
        measure: how one commit is measured (default :func:`measure_commit`).
    """
    measure = measure or measure_commit
    repo = Path(git(["rev-parse", "--show-toplevel"], repo or Path.cwd()))
    current_src = (current_src or repo).resolve()
    selected = select_commits(repo, commits, every)
    reference = git(["rev-parse", "HEAD"], current_src)
    if git(["status", "--porcelain", "--untracked-files=no"], current_src):
        reference += "-dirty"  # the current side has uncommitted changes: say so in the store
    _remove_stale_worktrees(repo)
    outcomes = []
    for i, sha in enumerate(selected, 1):
        head = f"[{i}/{len(selected)}] {sha[:10]}"
        if store.has_run(commit=sha, label=cfg.label):
            log(f"{head}: already in the store, skipped")
            outcomes.append(Outcome(sha, "skipped"))
            continue
        log(f"{head}: measuring against the current tree ({reference[:10]})")
        outcome = _one(store, repo, sha, current_src, reference, cfg, runs_dir, measure)
        log(f"{head}: " + (f"filed {outcome.points} points" if outcome.state == "filed"
                           else f"failed: {outcome.reason}"))
        outcomes.append(outcome)
    return outcomes


def _remove_stale_worktrees(repo: Path) -> None:
    """Remove the worktrees a killed backfill left (its ``finally`` never ran)."""
    listing = git(["worktree", "list", "--porcelain"], repo)
    for line in listing.splitlines():
        path = line[len("worktree "):] if line.startswith("worktree ") else ""
        if path and Path(path).parent.name.startswith(TEMP_PREFIX):
            subprocess.run(["git", "worktree", "remove", "--force", path], cwd=repo,
                           capture_output=True, timeout=120)
            shutil.rmtree(Path(path).parent, ignore_errors=True)
    git(["worktree", "prune"], repo)


def _one(store: HistoryStore, repo: Path, sha: str, current_src: Path, reference: str,
         cfg: BackfillConfig, runs_dir: Path | None, measure: Measure) -> Outcome:
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    tree = tmp / "src"
    out = (runs_dir / sha[:12]) if runs_dir else tmp / "run"
    try:
        git(["worktree", "add", "--detach", str(tree), sha], repo)
        if out.exists():
            shutil.rmtree(out)  # a half-written run of a killed backfill
        try:
            measure(tree, current_src, out, cfg)
        except Exception as exc:  # noqa: BLE001 - a commit that cannot run: say why, go on
            return Outcome(sha, "failed", reason=f"{type(exc).__name__}: {exc}".splitlines()[0])
        if not results_path(out / "baseline").is_file():  # a results file (or a run directory)
            return Outcome(sha, "failed", reason="the commit's side wrote no records")
        try:
            added = store.add_run(out / "baseline", commit=sha,
                                  commit_date=commit_time(sha, repo), label=cfg.label,
                                  reference_commit=reference, extra=relative_points(out))
        except HistoryError as exc:
            return Outcome(sha, "failed", reason=str(exc))
        return Outcome(sha, "filed", points=added.added)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo,
                       capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True, timeout=120)


__all__ = ["BackfillConfig", "Outcome", "backfill", "measure_commit", "relative_points",
           "select_commits"]
