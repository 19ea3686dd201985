"""``accelbench sweep``: models x settings x stacks from a sweep file, each job isolated."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
from tqdm.auto import tqdm

from bench.cli import options
from bench.cli.app import main
from bench.core import smoke

EPILOG_SWEEP = """\b
Examples:
  accelbench sweep --example > sweep.toml      a commented sweep file to start from
  accelbench sweep sweep.toml                  run it; run it again to resume
  accelbench sweep sweep.toml --dry-run        validate and list the jobs, run nothing
  accelbench sweep sweep.toml -j 2 --timeout 600
  accelbench sweep sweep.toml --retry-failed   run the jobs that failed once more
  accelbench sweep sweep.toml --address auto   as Ray tasks on a running Ray cluster

\b
Each job (model, settings, stack) runs in its own process and times the baseline itself
just before its stack, so its speedup is against the same machine and process. A crash,
an out-of-memory kill or a hang past the time limit becomes a failed row and the sweep
goes on. Exit status: 0 every job recorded, 1 some failed, 2 a bad sweep file.
"""


@main.command("sweep", epilog=EPILOG_SWEEP)
@click.argument("sweep_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--example", is_flag=True, help="Print a commented example sweep file and exit.")
@options.out("Sweep folder (default: the file's `out`, else runs/sweep-<name>).")
@options.executor("jobs", "[local] Jobs at once (default: the file's [jobs] workers, else 1).")
@options.threads("torch threads per job; on Ray also its CPUs (default: cores / workers; Ray: 1).")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds a job may run before it is killed (default: the file's [jobs] timeout_s).")
@click.option("--retry-failed", is_flag=True, help="Run the jobs whose record is a failure again.")
@click.option("--dry-run", is_flag=True, help="Validate and list the jobs; run nothing.")
@options.quiet("No progress bar.")
@click.option("--verbose", is_flag=True, help="[ray] Let Ray's own log lines through.")
def sweep_cmd(sweep_file, example, out_dir, executor, address, workers, threads, timeout,
              retry_failed, dry_run, quiet, verbose) -> None:
    """Run a sweep file: models x settings x strategy stacks, each job isolated.

    The whole sweep is expanded and validated before any model loads. Records go to
    SWEEP_FOLDER/results.jsonl (read them with bench.results.load or `accelbench report`).
    """
    from bench import sweep as sweeplib  # lazy: the CLI imports no torch until a command runs
    from bench.sweep.executors import driver, make_executor  # lazy: as above

    if example:
        click.echo(sweeplib.EXAMPLE, nl=False)
        return
    if sweep_file is None:
        raise click.UsageError("give a SWEEP_FILE (or --example to print one)")
    executor = options.resolve_executor(executor, address)

    spec = sweeplib.load(sweep_file, out_dir=out_dir)
    changes = {k: v for k, v in (("workers", workers), ("threads", threads),
                                 ("timeout_s", timeout)) if v is not None}
    if smoke.active():
        timing = dict(spec.timing)
        timing.update(warmup=smoke.cap("warmup", timing.get("warmup", 2)),
                      min_iterations=smoke.cap("iterations", timing.get("min_iterations", 10)),
                      min_seconds=0.0)
        changes.update(timing=timing, quality_images=smoke.cap("quality_images", spec.quality_images))
    spec = dataclasses.replace(spec, **changes)
    ex = make_executor(executor, workers=spec.workers, threads=spec.threads, address=address,
                       verbose=verbose)
    try:
        plan = sweeplib.validate(spec, check_devices=ex.checks_devices_locally)
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        if dry_run:
            click.echo(driver.plan_table(plan, retry_failed))
            return
    except BaseException:
        ex.close()
        raise
    bar = None

    def on_start(todo, skipped):
        nonlocal bar
        click.echo(f"sweep {spec.name}: {len(plan.jobs)} jobs ({len(skipped)} already recorded, "
                   f"{len(todo)} to run) on {executor}; folder {spec.out_dir}", err=True)
        bar = tqdm(total=len(todo), desc="jobs", unit="job", disable=quiet or not todo)

    def on_done(outcome):
        if outcome.status == "failed":
            bar.write(f"FAILED {outcome.job.label}: {str(outcome.record.get('error'))[:160]}",
                      file=sys.stderr)
        bar.set_postfix_str(f"{outcome.job.strategy[:24]}: {outcome.status}")
        bar.update(1)

    try:
        result = driver.run_plan(plan, ex, retry_failed=retry_failed, on_start=on_start,
                                 on_done=on_done)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished jobs are recorded; run the same command to resume",
                   err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()
    click.echo(driver.summary(result))
    sys.exit(1 if result.failed else 0)
