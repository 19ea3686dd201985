"""The ``accelbench`` command group and what every command shares: bad input as one line
(exit 2), anything else as a bug with its traceback (exit 3)."""

from __future__ import annotations

import os
import sys
import traceback

import click

from bench import __version__
from bench.core.errors import EXIT_BUG, EXIT_INPUT, AccelbenchError


class _ErrorGroup(click.Group):
    """Bad input (an :class:`AccelbenchError`, a missing file) becomes one clear line and exit
    2; any other exception is a bug: its traceback is printed and the exit status is 3."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (AccelbenchError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_INPUT)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader went away (``accelbench list | head``): not a bug
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception:  # a bug, not bad input: say so, with the traceback
            traceback.print_exc()
            click.echo("accelbench: internal error (the traceback above is a bug report)", err=True)
            ctx.exit(EXIT_BUG)


@click.group(cls=_ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="accelbench")
def main() -> None:
    """accelbench: what acceleration techniques really buy for image generation.

    Apply techniques (precision, quantization, pruning, distillation, caching, compilation,
    fewer steps...) to a model, time the generation loop while sampling memory and power,
    score the images against the unaccelerated ones, and compare.
    """
