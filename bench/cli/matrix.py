"""``accelbench matrix``: every strategy on every architecture model."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli import options
from bench.cli.app import main
from bench.core import smoke

EPILOG_MATRIX = """\b
Examples:
  accelbench matrix --out runs/matrix
      every strategy on every tiny architecture model (arch:<family>@tiny), on the CPU
  accelbench matrix -m arch:sdxl@tiny -m arch:flux@tiny -s deepcache -s fbcache --out runs/m
  accelbench matrix -m arch:sdxl -m arch:flux --device cuda --out runs/matrix-gpu
  accelbench matrix --out docs/matrix --readme README.md   (refresh the README's table)

Exit status: 0 no cell failed, 1 some cell failed, 2 bad input.
"""


@main.command("matrix", epilog=EPILOG_MATRIX)
@options.model("Model (repeatable; default: every arch:<family>@tiny).", multiple=True)
@options.strategy("Stack (repeatable; default: every strategy with its defaults, plus bf16+compile:scope=blocks).")
@options.out("Folder for matrix.json, matrix.md and one run directory per model.", required=True)
@options.device()
@options.iterations(8, minimum=6, help="Timed calls per stack (paired interleaved rounds; 6 at "
                    "least, the fewest whose interval of the median reaches 95%).")
@options.warmup()
@options.quality_images(2, "Images per stack for PSNR against the baseline.")
@options.threads()
@click.option("--readme", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Also write the table into this README between its matrix markers.")
@options.quiet()
def matrix_cmd(models, strategies, out_dir, device, iterations, warmup, quality_images, threads,
               readme, quiet) -> None:
    """Run every strategy on every architecture model: ok (speedup, PSNR), n/a (why), FAILED.

    Architecture models are the real pipeline classes with random weights, so speedups are
    real and PSNR is a numerical deviation; strategies that decide from the activations
    (adaptive caching) are marked as not representative there.
    """
    from bench.measure.engine import plan_stacks  # lazy: as above
    from bench.models.registry import get_model_info  # lazy: as above
    from bench.sweep import matrix  # lazy: the CLI imports no torch until a command runs

    iterations, warmup = smoke.cap("iterations", iterations), smoke.cap("warmup", warmup)
    quality_images = smoke.cap("quality_images", quality_images)
    models = list(models) or matrix.default_models()
    stacks = list(strategies) or matrix.default_strategies()
    plan_stacks(stacks, device)  # bad specs fail before anything loads
    for m in models:
        get_model_info(m)
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    cells = matrix.run_matrix(models, stacks, out_dir, device=device, iterations=iterations,
                              warmup=warmup, quality_images=quality_images, threads=threads,
                              log=log, show_progress=not quiet)
    click.echo(matrix.markdown(cells))
    click.echo(f"matrix: {out_dir / 'matrix.json'}, {out_dir / 'matrix.md'}")
    if readme:
        command = "accelbench " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["matrix"] else "accelbench matrix"
        matrix.update_readme(readme, cells, command)
        click.echo(f"table written into {readme}")
    sys.exit(1 if any(c.status == "failed" for c in cells) else 0)
