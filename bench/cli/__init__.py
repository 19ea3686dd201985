"""The ``accelbench`` command line: one module per command over shared options
(:mod:`bench.cli.options`). Commands only parse and build config objects; the work happens in
:mod:`bench.measure` (measuring), :mod:`bench.gate`, :mod:`bench.tune`, :mod:`bench.sweep` and
:mod:`reports`. Importing it loads no torch: commands import what they need when they run."""

from bench.cli import (  # noqa: F401 (registers the commands)
    catalog,
    gate,
    history,
    matrix,
    report,
    run,
    sweep,
    tune,
)
from bench.cli.app import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
