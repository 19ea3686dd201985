"""``accelbench tune``: the fastest stack above quality floors, within a budget."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli import options
from bench.cli.app import main
from bench.core import smoke
from bench.core.summary import tune_summary

EPILOG_TUNE = """\b
Examples:
  accelbench tune --constraint "adherence>=0.97" --constraint "fid<=floor" --budget 30m
      the fastest stack of digits-unet whose adherence and FID stay within the baseline's
  accelbench tune --model digits-dit --objective energy --constraint "psnr>=30" --budget 1h
  accelbench tune --budget 20m                     (no constraint: the Pareto front)
  accelbench tune --executor ray --address auto --storage postgresql://db/optuna ...

\b
Constraints: METRIC>=VALUE or METRIC<=VALUE on a quality metric (psnr, ssim, adherence,
fid, kid, lpips, clip_score). VALUE "floor" means within the baseline's noise band: the
baseline's value measured the same way, minus (adherence) or plus (fid, kid) two standard
deviations of what real images score at that number of images.

Run the same command again to continue the search (the study lives in OUT/study.db).
"""


@main.command("tune", epilog=EPILOG_TUNE)
@options.model("Model to tune.")
@click.option("-c", "--constraint", "constraints", multiple=True,
              help="Quality floor (repeatable): adherence>=0.97, fid<=floor, psnr>=30.")
@click.option("--objective", type=click.Choice(["latency", "energy", "memory"]), default="latency",
              show_default=True, help="What to minimise, per image.")
@click.option("--budget", default="30m", show_default=True,
              help="Wall time of this invocation: 30m, 1h, 900s.")
@options.out("Tune folder (default: runs/tune-<model>).")
@click.option("--storage", default=None,
              help="Optuna storage URL for the study (default: sqlite in the tune folder).")
@options.executor("trials", "Trials at once (default: 1).")
@options.threads("torch threads per trial (default: cores / workers).")
@options.device()
@options.batch_size()
@options.strategy("Search only these strategies (repeatable; default: every registered one).")
@click.option("--allow-training", is_flag=True,
              help="Let strategies that train join (each configuration trains once; cached).")
@click.option("--trials", "max_trials", type=click.IntRange(min=1), default=None,
              help="Stop after this many trials in the study.")
@click.option("--promote", default=3, show_default=True, type=click.IntRange(min=1),
              help="Candidates measured in full at the end.")
@click.option("--cheap-images", default=200, show_default=True, type=click.IntRange(min=2),
              help="Quality images of each trial: the constraints are judged at this count, so "
                   "the same as --full-images keeps a trial's verdict in the final measurement "
                   "(fewer make trials cheaper and looser: FID's noise band widens).")
@click.option("--full-images", default=200, show_default=True, type=click.IntRange(min=2),
              help="Quality images of the final measurement.")
@options.quiet()
def tune_cmd(model, constraints, objective, budget, out_dir, storage, executor, address, workers,
             threads, device, batch_size, strategies, allow_training, max_trials, promote,
             cheap_images, full_images, quiet) -> None:
    """Search strategy stacks for the fastest (or leanest) one above quality floors.

    Every trial is measured cheaply (a few calls interleaved with the baseline, a few quality
    images); the best candidates are then measured in full, interleaved together, and that
    measurement is the answer. Exit status: 0 found one, 1 nothing met the constraints,
    2 bad input.
    """
    from bench import tune  # lazy: the CLI imports no torch until a command runs
    from strategies import get_strategy  # lazy: as above

    budget_s = smoke.cap("budget_s", tune.parse_budget(budget))
    max_trials = smoke.cap("trials", max_trials) if max_trials else (smoke.CAPS["trials"] if smoke.active() else None)
    cheap_images, full_images = smoke.cap("cheap_images", cheap_images), smoke.cap("full_images", full_images)
    batch_size = smoke.cap("batch_size", batch_size)

    if out_dir is None:
        out_dir = Path("runs") / f"tune-{options.slug(model)}"
    config = tune.TuneConfig(
        model=model, constraints=tuple(tune.Constraint.parse(c) for c in constraints),
        objective=objective, budget_s=budget_s, out_dir=out_dir, storage=storage,
        executor=options.resolve_executor(executor, address), address=address, workers=workers or 1,
        threads=threads, device=device, batch_size=batch_size, allow_training=allow_training,
        strategies=tuple(strategies) or None, max_trials=max_trials, promote=promote,
        cheap_quality_images=cheap_images, full_quality_images=full_images,
        **({"cheap_iterations": smoke.cap("iterations", 6), "full_iterations": smoke.cap("iterations", 10)}
           if smoke.active() else {}),
    )
    for s in config.strategies or ():
        get_strategy(s)
    result = tune.run(config, log=None if quiet else (lambda m: click.echo(m, err=True)))
    click.echo(tune_summary(result.as_dict()))
    click.echo(f"\ntune folder: {out_dir}   (study {config.study_name}; run the same command to continue)")
    sys.exit(0 if result.best or not config.constraints else 1)
