"""``accelbench run``: measure strategy stacks on a model and write a run directory."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

from bench.cli import options
from bench.cli.app import main
from bench.core import smoke
from bench.core.config import (
    DEFAULT_STRATEGIES,
    DTYPES,
    QUALITY_IMAGES,
    RANDOM_WEIGHT_QUALITY_IMAGES,
    SAMPLE_INTERVAL_S,
    SCHEDULES,
    RunConfig,
    TimingConfig,
    parse_resolution,
)
from bench.core.quality_config import DEFAULT_CLIP_BACKBONE, QualityConfig
from bench.core.rules import parse_fraction
from bench.core.summary import schedule_line, slower_lines, summary_table, verdict_note

EPILOG_RUN = """\b
Examples:
  accelbench run
      default strategies on the embedded digits-unet model, on the CPU
  accelbench run --strategy bf16 --strategy steps:n=10 --iterations 20
  accelbench run -s "scheduler:name=unipc+steps:n=8" -s fp16 --device cuda
  accelbench run --model hf:stabilityai/sd-turbo --device cuda -s bf16 --steps 4

A strategy is name[:key=value,...]; join several with '+' to stack them
(they are applied in a fixed, sensible order). `accelbench list` shows them all.
"""


@main.command("run", epilog=EPILOG_RUN)
@options.model()
@options.strategy(f"Strategy stack to measure (repeatable). Default: {', '.join(DEFAULT_STRATEGIES)}.")
@options.device()
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Load the model's weights in this dtype (the baseline runs in it). Default: "
                   "on CUDA an arch: model's published dtype (fp16 for SD 1.5 and SDXL, bf16 "
                   "for the others), fp32 elsewhere and on the CPU.")
@options.batch_size()
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Denoising steps of the baseline (default: the model's own).")
@click.option("--resolution", default=None, metavar="SIZE",
              help="Generate at SIZE (512, or 768x512 as width x height); default: the model's own.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="auto",
              show_default=True,
              help="How stacks are timed: interleaved (rounds, order reversed each round; "
                   "robust to a machine whose speed changes), sequential (one after the "
                   "other), or auto (interleaved when all stacks fit in memory at once).")
@options.iterations(10, help="Timed calls per stack at least (interleaved: rounds).")
@click.option("--min-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Timed seconds at least (interleaved: the whole run; sequential: each stack).")
@click.option("--max-seconds", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="Stop adding calls after this many timed seconds (caps --target-ci).")
@click.option("--target-ci", default=None, metavar="PCT",
              help="Keep measuring until every speedup's 95% interval is within +-PCT of it "
                   "(e.g. 5%), or --max-seconds pass.")
@options.warmup()
@click.option("--margin", default="5%", show_default=True, metavar="PCT",
              help="Practical margin of 'equivalent': a speedup whose whole interval lies within "
                   "+-PCT of no change reads as equivalent.")
@click.option("--block", default=1, show_default=True, type=click.IntRange(min=1),
              help="Interleaved: calls of one stack in a row within a round.")
@options.threads()
@options.quality_images(None, f"Images generated apart from the timing for quality (default: "
                        f"{QUALITY_IMAGES}; {RANDOM_WEIGHT_QUALITY_IMAGES} on random-weight arch: "
                        "models, where only fidelity to their baseline means something).")
@options.out("Run directory (default: runs/<model>-<time>).")
@click.option("--baseline-src", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Another accelbench checkout: measure every stack with both "
              "trees, in worker processes, interleaved (its records go to OUT/baseline).")
@click.option("--current-src", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="With --baseline-src: the tree of the current side (default: "
              "the checkout you are in, else the installed one).")
@click.option("--sample-interval", default=SAMPLE_INTERVAL_S, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds between memory/power samples.")
@click.option("--no-flops", is_flag=True, help="Do not count FLOPs per step (saves one call per stack).")
@click.option("--no-cache", is_flag=True, help="Recompute the baseline images.")
@click.option("--allow-download", is_flag=True, help="Let hf: models download their weights.")
@click.option("--trust-remote-code", is_flag=True,
              help="Run code that ships with a hub pipeline (off unless you ask).")
@options.quiet()
@click.option("--no-report", is_flag=True, help="Do not write report.html into the run directory.")
@click.option("--history", "history_store", default=None, metavar="STORE",
              help="After the run, file its records in this history store (a SQLite path or "
                   "SQLAlchemy URL; see `accelbench history add`).")
@click.option("--real-images", "real_images_dir", default=None,
              type=click.Path(exists=True, file_okay=False),
              help="Folder of real images for Inception FID/KID on hf: models.")
@click.option("--clip-backbone", default=None,
              help="CLIP model of the CLIP score on hf: models (hub id or local folder; default "
                   "openai/clip-vit-large-patch14). Scores of different backbones don't compare.")
def run_cmd(model, strategies, device, dtype, batch_size, steps, resolution, schedule, iterations,
            min_seconds, max_seconds, target_ci, warmup, margin, block, threads, quality_images, out_dir,
            baseline_src, current_src, sample_interval, no_flops, no_cache, allow_download,
            trust_remote_code, quiet, no_report=False, history_store=None, real_images_dir=None,
            clip_backbone=None) -> None:
    """Measure strategy stacks on a model and write a run directory.

    The baseline is always measured too; every stack is timed (interleaved with the others
    by default), then scored against the baseline's images (same prompts and seeds).
    Exit status: 0 done, 1 some stack failed, 2 bad input or nothing could run.
    """
    from bench.measure.engine import (  # lazy: the CLI imports no torch until a command runs
        Engine,
        plan_stacks,
    )

    iterations, warmup = smoke.cap("iterations", iterations), smoke.cap("warmup", warmup)
    min_seconds, quality_images = smoke.cap("min_seconds", min_seconds), smoke.cap("quality_images", quality_images)
    latest = out_dir is None
    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{options.slug(model)}-{stamp}"
    config = RunConfig(
        model=model,
        strategies=tuple(strategies) or DEFAULT_STRATEGIES,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        steps=steps,
        resolution=parse_resolution(resolution) if resolution else None,
        timing=TimingConfig(
            warmup=warmup,
            min_iterations=iterations,
            min_seconds=min_seconds,
            max_iterations=max(200, iterations),
            max_seconds=max(max_seconds, min_seconds),
            target_ci=parse_fraction(target_ci, "--target-ci") if target_ci else None,
        ),
        quality_images=quality_images,
        sample_interval_s=sample_interval,
        out_dir=out_dir,
        trust_remote_code=trust_remote_code,
        allow_download=allow_download,
        use_cache=not no_cache,
        quality=QualityConfig(
            real_images_dir=real_images_dir,
            clip_backbone=clip_backbone or DEFAULT_CLIP_BACKBONE,
        ),
        schedule="interleaved" if baseline_src and schedule == "auto" else schedule,
        block=block,
        threads=threads,
        count_flops=not no_flops,
        baseline_src=str(baseline_src) if baseline_src else None,
        current_src=str(current_src) if current_src else None,
    )
    margin = parse_fraction(margin, "--margin")
    plan_stacks(config.strategies, device)  # fail on bad specs before loading anything
    history = _open_history(history_store) if history_store else None  # a bad URL fails now
    started = time.perf_counter()
    result = Engine(config, show_progress=not quiet,
                    log=None if quiet else (lambda m: click.echo(m, err=True))).run()
    click.echo(schedule_line(result.schedule))
    click.echo(summary_table(result.records, margin))
    if verdict_note(result.records, margin):
        click.echo(verdict_note(result.records, margin))
    for line in slower_lines(result.records):
        click.echo(line)
    if result.baseline_records:
        click.echo(f"\nbaseline tree ({config.baseline_src}):")
        click.echo(summary_table(result.baseline_records))
    for warning in result.warnings:
        click.secho(f"\nwarning: {warning}", fg="yellow", err=True)
    if smoke.note():
        click.secho(f"\nnote: {smoke.note()}", fg="yellow", err=True)
    click.echo(f"\nresults: {out_dir / 'results.jsonl'}   ({time.perf_counter() - started:.0f} s)")
    if latest:
        _point_latest(out_dir)
    if not no_report:
        _write_run_report(out_dir)
    if history is not None:
        res = history.add_run(out_dir)
        click.echo(f"history: {res.added} points filed in {history.shown}")
    if any(r.get("status") == "failed" for r in result.records + result.baseline_records):
        sys.exit(1)


def _point_latest(out_dir: Path) -> None:
    """Make ``runs/latest`` point at the run just written (a relative symbolic link)."""
    link = out_dir.parent / "latest"
    try:
        if link.is_symlink() or link.exists():
            if not link.is_symlink():
                return  # a real folder of the user's: leave it alone
            link.unlink()
        link.symlink_to(out_dir.name, target_is_directory=True)
    except OSError:  # no symbolic links here: the path printed above is the way
        pass


def _open_history(store_url: str):
    """The history store of ``--history``, opened (and created) before anything is measured."""
    from bench.history.store import HistoryStore

    return HistoryStore(store_url)


def _write_run_report(out_dir: Path) -> None:
    """Write ``report.html`` into a finished run directory and print its path; a report
    that fails is a warning (the results are already safe on disk)."""
    from reports import build_report  # lazy: plotting libraries load only for a report

    try:
        rep = build_report([out_dir], out_dir / "report.html")
    except Exception as exc:  # noqa: BLE001 - never lose a finished run to the report
        click.echo(f"warning: report not written ({type(exc).__name__}: {exc}); "
                   f"retry with `accelbench report {out_dir}`", err=True)
        return
    click.echo(f"report:  {rep.path}")
