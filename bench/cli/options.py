"""Options every command that has the concept spells the same way: one flag, one meaning.

Each factory returns a click decorator; a command passes only what differs for it (its
help line, its default). The vocabulary: ``-m/--model``, ``-s/--strategy`` (repeatable),
``-d/--device``, ``-b/--batch-size``, ``-n/--iterations``, ``--warmup``, ``-q/--quality-images``,
``--threads``, ``-o/--out``, ``--executor``/``--address``/``-j/--workers``, ``--quiet``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bench.core.config import DEFAULT_MODEL, PROTOCOL_WARMUP

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def model(help: str = "Registry name, arch:<family>[@tiny] or hf:<repo id or local path>.",
          multiple: bool = False) -> Decorator:
    """``-m/--model``: one model (default :data:`DEFAULT_MODEL`), or several (``models``)."""
    if multiple:
        return click.option("-m", "--model", "models", multiple=True, help=help)
    return click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help=help)


def strategy(help: str) -> Decorator:
    """``-s/--strategy``: strategy stacks, repeatable (``strategies``)."""
    return click.option("-s", "--strategy", "strategies", multiple=True, help=help)


def device(help: str = "cpu, cuda, cuda:1, mps.") -> Decorator:
    """``-d/--device``, default cpu."""
    return click.option("-d", "--device", default="cpu", show_default=True, help=help)


def batch_size(help: str = "Images per generation call in the timed loop.") -> Decorator:
    """``-b/--batch-size``, default 8."""
    return click.option("-b", "--batch-size", default=8, show_default=True,
                        type=click.IntRange(min=1), help=help)


def iterations(default: int, minimum: int = 1, help: str = "Timed calls per stack at least.") -> Decorator:
    """``-n/--iterations``: timed calls per stack."""
    return click.option("-n", "--iterations", default=default, show_default=True,
                        type=click.IntRange(min=minimum), help=help)


def warmup() -> Decorator:
    """``--warmup``: untimed calls per stack before timing (the protocol's number by default)."""
    return click.option(
        "--warmup", default=PROTOCOL_WARMUP, show_default=True, type=click.IntRange(min=0),
        help=f"Untimed warm-up calls per stack before timing (compile happens here; the "
             f"protocol asks for {PROTOCOL_WARMUP} at least; fewer is allowed, and each record "
             "says so in its caveats).")


def quality_images(default: int | None, help: str) -> Decorator:
    """``-q/--quality-images``: images generated apart from the timing for quality."""
    return click.option("-q", "--quality-images", default=default, show_default=default is not None,
                        type=click.IntRange(min=0), help=help)


def threads(help: str = "torch threads (default: one per core). Use 1 when other work shares "
                        "the CPU.") -> Decorator:
    """``--threads``: torch's intra-op threads."""
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help)


def out(help: str, required: bool = False) -> Decorator:
    """``-o/--out``: the folder a command writes (``out_dir``)."""
    return click.option("-o", "--out", "out_dir", required=required, default=None, help=help,
                        type=click.Path(file_okay=False, path_type=Path))


def executor(what: str, workers_help: str) -> Decorator:
    """``--executor``, ``--address`` and ``-j/--workers``: where ``what`` (jobs, trials) run.
    ``--address`` implies Ray; the default is processes here."""
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
                          help=workers_help)(fn)
        fn = click.option("--address", default=None,
                          help="[ray] Cluster address: auto, host:6379 or ray://host:10001 "
                               "(default: $RAY_ADDRESS, else a Ray instance started here). "
                               "Implies --executor ray.")(fn)
        return click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
                            help=f"Where {what} run: processes here (local; default) or Ray "
                                 "tasks (ray).")(fn)
    return apply


def resolve_executor(executor: str | None, address: str | None) -> str:
    """The executor ``--executor`` and ``--address`` name together (a usage error if they
    contradict each other)."""
    if address and executor == "local":
        raise click.UsageError("--address is for --executor ray")
    return executor or ("ray" if address else "local")


def quiet(help: str = "No progress output.") -> Decorator:
    """``--quiet``: no progress bars or log lines."""
    return click.option("--quiet", is_flag=True, help=help)


def slug(model_name: str) -> str:
    """A model name as a folder name (``arch:sdxl@tiny`` -> ``arch-sdxl-tiny``)."""
    return model_name.replace(":", "-").replace("/", "-").replace("@", "-")


__all__ = ["batch_size", "device", "executor", "iterations", "model", "out", "quality_images",
           "quiet", "resolve_executor", "slug", "strategy", "threads", "warmup"]
