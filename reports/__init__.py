"""accelbench reports: one self-contained HTML file from one or more run directories.

It reads only the results schema (:mod:`bench.core.results`) and never imports torch, so a report
can be rebuilt on a laptop from copied run directories::

    from reports import build_report
    build_report(["runs/before", "runs/after"], "report.html")

Modules: :mod:`reports.pareto` (frontiers, on :mod:`bench.core.pareto`), :mod:`reports.data`
(records typed), :mod:`reports.plots` (seaborn figures as embedded PNG, one module per figure
family), :mod:`reports.compare` (changes between runs with Mann-Whitney U),
:mod:`reports.table` (the strategy table), :mod:`reports.sections` (what each model shows),
:mod:`reports.search` (a tune folder's search), :mod:`reports.html` (the page, from
``templates/``) and :mod:`reports.history` (the history pages: trends and change points).
Plotting libraries load on first use, so importing this package is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reports.html import Report


def build_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                 title: str | None = None) -> Report:
    """Write the HTML report of ``run_dirs`` to ``out``; see :func:`reports.html.build_report`."""
    from reports.html import build_report as _build  # lazy: keeps `import reports` cheap

    return _build(run_dirs, out, title=title)


__all__ = ["build_report"]
