"""The ``accelbench`` command line. It only parses and builds config objects; the work
happens in :mod:`bench.runner` and friends."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

from bench import __version__

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


class _ErrorGroup(click.Group):
    """Turns the project's own errors into one clear line and exit code 2."""

    def invoke(self, ctx):
        from bench.models.registry import ModelError
        from strategies.base import StrategyError

        try:
            return super().invoke(ctx)
        except (StrategyError, ModelError, ValueError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="accelbench")
def main() -> None:
    """accelbench: what acceleration techniques really buy for image generation.

    Apply techniques (precision, quantization, pruning, distillation, caching, compilation,
    fewer steps...) to a model, time the generation loop while sampling memory and power,
    score the images against the unaccelerated ones, and compare.
    """


@main.command("list")
def list_cmd() -> None:
    """List the models and strategies, each with one line of help."""
    from bench.models.registry import list_models
    from strategies.registry import list_strategies

    click.secho("Models", bold=True)
    for info in list_models():
        click.echo(f"  {info.name:<18} {info.summary}")
    click.echo(f"  {'hf:<id or path>':<18} any diffusers text-to-image pipeline you have locally")
    click.secho("\nStrategies", bold=True)
    for name, summary in list_strategies():
        click.echo(f"  {name:<18} {summary}")
    click.echo("\nA strategy's parameters: accelbench describe NAME")


@main.command("describe")
@click.argument("name")
def describe_cmd(name: str) -> None:
    """Show a strategy's parameters, defaults and allowed values."""
    from strategies.registry import get_strategy

    cls = get_strategy(name)
    click.secho(f"{cls.name}: {cls.summary}", bold=True)
    if cls.__doc__:
        click.echo(cls.__doc__.strip())
    lines = cls.Config.describe_params()
    click.echo("\nParameters:" if lines else "\nNo parameters.")
    for line in lines:
        click.echo(f"  {line}")


@main.command("run", epilog=EPILOG_RUN)
@click.option("-m", "--model", default="digits-unet", show_default=True,
              help="Registry name or hf:<repo id or local path>.")
@click.option("-s", "--strategy", "strategies", multiple=True,
              help="Strategy stack to measure (repeatable). Default: baseline, bf16, "
                   "steps:n=10, scheduler:name=dpm-solver+steps:n=10.")
@click.option("-d", "--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, mps.")
@click.option("-b", "--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per generation call in the timed loop.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Denoising steps of the baseline (default: the model's own).")
@click.option("-n", "--iterations", default=5, show_default=True, type=click.IntRange(min=1),
              help="Timed calls at least.")
@click.option("--min-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Timed seconds at least (both minimums must be met).")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0),
              help="Untimed warm-up calls before timing.")
@click.option("-q", "--quality-images", default=100, show_default=True,
              type=click.IntRange(min=0), help="Images generated apart from the timing for quality.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Run directory (default: runs/<model>-<time>).")
@click.option("--sample-interval", default=0.05, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds between memory/power samples.")
@click.option("--no-cache", is_flag=True, help="Recompute the baseline images.")
@click.option("--allow-download", is_flag=True, help="Let hf: models download their weights.")
@click.option("--trust-remote-code", is_flag=True,
              help="Run code that ships with a hub pipeline (off unless you ask).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run_cmd(model, strategies, device, batch_size, steps, iterations, min_seconds, warmup,
            quality_images, out_dir, sample_interval, no_cache, allow_download,
            trust_remote_code, quiet) -> None:
    """Measure strategy stacks on a model and write a run directory.

    The baseline is always measured first; every other stack is timed, then scored
    against the baseline's images (same prompts and seeds).
    """
    from bench.harness import TimingConfig
    from bench.runner import DEFAULT_STRATEGIES, RunConfig, Runner, parse_stacks
    from bench.summary import summary_table

    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{model.replace(':', '-').replace('/', '-')}-{stamp}"
    config = RunConfig(
        model=model,
        strategies=tuple(strategies) or DEFAULT_STRATEGIES,
        device=device,
        batch_size=batch_size,
        steps=steps,
        timing=TimingConfig(
            warmup=warmup,
            min_iterations=iterations,
            min_seconds=min_seconds,
            max_iterations=max(200, iterations),
        ),
        quality_images=quality_images,
        sample_interval_s=sample_interval,
        out_dir=out_dir,
        trust_remote_code=trust_remote_code,
        allow_download=allow_download,
        use_cache=not no_cache,
    )
    parse_stacks(config.strategies, device)  # fail on bad specs before loading anything
    started = time.perf_counter()
    runner = Runner(config, show_progress=not quiet,
                    log=None if quiet else (lambda m: click.echo(m, err=True)))
    records = runner.run()
    click.echo(summary_table(records))
    click.echo(f"\nresults: {out_dir / 'results.jsonl'}   ({time.perf_counter() - started:.0f} s)")
    if any(r.get("status") == "failed" for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
