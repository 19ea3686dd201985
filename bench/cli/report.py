"""``accelbench report``: one self-contained HTML report from run directories."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.app import main
from reports import build_report


@main.command("report")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: RUN_DIR/report.html for one run, "
                   "./report.html for several).")
@click.option("--title", default=None, help="Title of the page.")
def report_cmd(run_dirs, out, title) -> None:
    """Build one self-contained HTML report from run directories (or results files).

    Pareto plots of latency and energy against every quality metric, a sortable table of
    every strategy, image grids, timings and the environment. With several runs, the first
    is the reference and each other run is compared with it, strategy by strategy
    (Mann-Whitney U on the raw latencies). Needs no torch.
    """
    if out is None:
        single = len(run_dirs) == 1 and run_dirs[0].is_dir()
        out = run_dirs[0] / "report.html" if single else Path("report.html")
    rep = build_report(run_dirs, out, title=title)
    click.echo(f"report: {rep.path}   ({rep.entries} records, {rep.figures} figures, "
               f"{rep.grids} image grids, {rep.seconds:.1f} s)")
