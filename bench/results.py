"""The results schema's public path, kept for scripts and notebooks: ``bench.results.load``
and friends live in :mod:`bench.core.results`."""

from bench.core.results import (
    COLUMNS,
    RESULTS_FILE,
    append,
    flatten,
    iter_records,
    load,
    results_path,
)

__all__ = ["COLUMNS", "RESULTS_FILE", "append", "flatten", "iter_records", "load", "results_path"]
