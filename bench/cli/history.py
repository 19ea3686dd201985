"""``accelbench history``: file runs by commit and machine, list the series, draw the pages,
and backfill past commits."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli import options
from bench.cli.app import main
from bench.core.errors import HistoryError

STORE_HELP = ("History store: a SQLite file path or any SQLAlchemy URL "
              "(sqlite:///h.sqlite, postgresql+psycopg://user@host/db). Default: "
              "$ACCELBENCH_HISTORY, else history.sqlite in the working directory. Its password "
              "is never printed; prefer a password file (~/.pgpass) to one in the URL.")

EPILOG_HISTORY = """\b
Examples:
  accelbench history add runs/ci-gate                 file a run (default store: history.sqlite)
  accelbench history add runs/* --store sqlite:///team.sqlite
  export ACCELBENCH_HISTORY=postgresql+psycopg://ci@db.internal/accelbench
  accelbench history list                             the series and their point counts
  accelbench history show --out history-pages         trends and change points as HTML
  accelbench history backfill --commits HEAD~12..HEAD --every 3 -s steps:n=10
  accelbench gate runs/pr --history history.sqlite    judge a run against its series
"""


def store_option(fn):
    """``--store URL``: the history store (``$ACCELBENCH_HISTORY``, else history.sqlite)."""
    return click.option("--store", "store_url", envvar="ACCELBENCH_HISTORY", default=None,
                        metavar="URL", help=STORE_HELP)(fn)


def _open(store_url: str | None, create: bool):
    from bench.history.store import HistoryStore, default_store

    return HistoryStore(store_url or default_store(), create=create)


@main.group("history", epilog=EPILOG_HISTORY)
def history_group() -> None:
    """Every run kept by commit and machine: file runs, list series, show trends, backfill.

    A point is one metric of one stack of one run: latency, speedup over the run's
    reference, energy per image, peak memory and each quality metric, with its interval.
    A series is one (model, stack, machine, settings, metric). Adding a run twice stores it
    once; nothing is ever changed or deleted.
    """


@history_group.command("add", epilog="""\b
Examples:
  accelbench history add runs/ci-gate
  accelbench history add runs/a runs/b --store sqlite:///history.sqlite
  accelbench history add runs/old --commit 1a2b3c4   (records made outside git)
""")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@store_option
@click.option("--commit", default=None, metavar="SHA",
              help="File the runs under this commit instead of the one their records name.")
def add_cmd(run_dirs, store_url, commit) -> None:
    """File each RUN_DIR (a run directory or results.jsonl) by commit, commit date, machine
    and settings. A run already in the store is skipped."""
    store = _open(store_url, create=True)
    for run_dir in run_dirs:
        res = store.add_run(run_dir, commit=commit)
        what = f"{res.added} points" if res.added else f"already there ({res.skipped} points)"
        click.echo(f"{run_dir}: {what}, commit {res.commit[:10]}")
    runs, points = store.count()
    click.echo(f"store {store.shown}: {runs} runs, {points} points")


@history_group.command("list")
@store_option
@click.option("--metric", "metrics", multiple=True, help="Only these metrics (repeatable).")
@click.option("-m", "--model", "models", multiple=True, help="Only these models (repeatable).")
def list_cmd(store_url, metrics, models) -> None:
    """A table of the store's series: model, stack, machine, settings, metric, points and the
    first and last commit date."""
    store = _open(store_url, create=False)
    table = store.series()
    if metrics:
        table = table[table["metric"].isin(metrics)]
    if models:
        table = table[table["model"].isin(models)]
    if table.empty:
        click.echo("no series")
        return
    rows = [("points", "first", "last", "series")]
    rows += [(str(r.points), str(r.first)[:10], str(r.last)[:10], r.series)
             for r in table.itertuples()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join([*(c.rjust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]]))


history_group.add_command(list_cmd, "series")


@history_group.command("show", epilog="""\b
Examples:
  accelbench history show --out history-pages
  accelbench history show --store sqlite:///team.sqlite --out pages -m digits-unet
  accelbench history show --out pages --commit-url 'https://github.com/o/r/commit/{commit}'
""")
@store_option
@options.out("Folder to write the pages into.", required=True)
@click.option("-m", "--model", "models", multiple=True, help="Only these models (repeatable).")
@click.option("--metric", "metrics", multiple=True, help="Only these metrics (repeatable).")
@click.option("--commit-url", default=None, metavar="PATTERN",
              help="Link commits, e.g. https://github.com/OWNER/REPO/commit/{commit}.")
def show_cmd(store_url, out_dir, models, metrics, commit_url) -> None:
    """Write self-contained HTML pages of every series: its points with their intervals by
    commit, and its change points (commit range, size with interval, direction)."""
    from bench.history.changepoints import changes
    from reports.history import write_pages

    store = _open(store_url, create=False)
    points = store.points(model=list(models) or None, metric=list(metrics) or None)
    if points.empty:
        raise HistoryError(f"no points to show in {store.shown} (check --model/--metric)")
    page = write_pages(points, changes(points), out_dir, commit_url=commit_url)
    click.echo(f"history: {page}")


@history_group.command("backfill", epilog="""\b
Examples:
  accelbench history backfill --commits HEAD~12..HEAD --every 3
  accelbench history backfill --commits v0.1..main -s steps:n=10 -s bf16 -n 10 --runs runs/bf

Each selected commit is checked out into a temporary worktree and measured against the
current tree in one interleaved run (accelbench run --baseline-src), so every point is a
paired ratio on this machine at the same minutes. A commit already filed with the same
options is skipped: rerun the same command to resume after a kill.
""")
@click.option("--commits", required=True, metavar="A..B",
              help="The commits after A up to B (git rev-list A..B), oldest first.")
@click.option("--every", default=1, show_default=True, type=click.IntRange(min=1),
              help="Measure every Nth commit, counted back from B (B is always measured).")
@store_option
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each commit's run directory here (default: removed after filing).")
@options.model()
@options.strategy("Strategy stack to measure (repeatable). Default: steps:n=10.")
@options.device()
@options.batch_size()
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Denoising steps of the baseline (default: the model's own).")
@options.iterations(8, help="Interleaved rounds per commit at least.")
@click.option("--min-seconds", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Timed seconds per commit at least.")
@options.warmup()
@options.quality_images(16, "Images generated apart from the timing for quality.")
@options.threads()
def backfill_cmd(commits, every, store_url, runs_dir, model, strategies, device, batch_size,
                 steps, iterations, min_seconds, warmup, quality_images, threads) -> None:
    """Measure past commits against the current tree and file each in the history.

    Exit status: 0 every selected commit filed or already there, 1 some commit failed,
    2 bad input.
    """
    from bench.history.backfill import BackfillConfig, backfill

    cfg = BackfillConfig(model=model, strategies=tuple(strategies) or ("steps:n=10",),
                         device=device, batch_size=batch_size, steps=steps,
                         iterations=iterations, warmup=warmup, min_seconds=min_seconds,
                         quality_images=quality_images, threads=threads)
    store = _open(store_url, create=True)
    outcomes = backfill(store, commits, cfg, every=every, runs_dir=runs_dir,
                        log=lambda m: click.echo(m, err=True))
    states = [o.state for o in outcomes]
    click.echo(f"backfill: {states.count('filed')} filed, {states.count('skipped')} already "
               f"there, {states.count('failed')} failed; store {store.shown}")
    if "failed" in states:
        sys.exit(1)
