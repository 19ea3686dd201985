"""Build the HTML report: one self-contained file from one or more run directories.

The page holds, per model: an overview, Pareto plots of latency (and energy, where measured)
per image against every quality metric, a sortable table of every strategy, image grids of
the baseline and each strategy on the same prompts and seeds, speedup and latency
distributions, per-step latency and the sampler timeline; then the comparison between runs
(when given several), what could not be measured and why, and the environment of each run
with links to its results files. Plots and images are embedded as data URIs; the CSS and the
few lines of JavaScript (table sorting) are inline, so the file opens offline anywhere.

Everything user-provided (strategy specs, model names, prompts, errors, environment) goes
through Jinja's autoescaping. Nothing here imports torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import __version__
from bench.core.errors import ReportError
from reports import compare as compare_mod
from reports import plots, search
from reports.data import RunData, load_runs, metric_order
from reports.sections import ModelSection, build_model_section, embed_png, metric_frontiers
from reports.table import build_table, fmt

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    path: Path
    figures: int
    grids: int
    entries: int
    seconds: float


def wbr(text: Any):
    """``text`` HTML-escaped, with line-break opportunities after ``+`` and ``,`` (long
    strategy stacks wrap at their joins instead of mid-word)."""
    from markupsafe import Markup, escape

    return Markup(str(escape(text)).replace("+", "+<wbr>").replace(",", ",<wbr>"))


def _href(target: Path, out_dir: Path) -> str:
    try:
        rel = os.path.relpath(target.resolve(), out_dir.resolve())
        return quote(Path(rel).as_posix())
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()


def _env_rows(env: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in env.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _env_rows(v, key + ".")
        elif isinstance(v, (list, tuple)):
            rows.append((key, ", ".join(str(x) for x in v)))
        else:
            rows.append((key, "-" if v is None else str(v)))
    return rows


def _run_files(run: RunData, out_dir: Path) -> list[tuple[str, str]]:
    files = [("results", run.results_file)]
    for e in run.entries:
        if e.series_path is not None and e.series_path.is_file():
            files.append((f"series: {e.strategy}", e.series_path))
    return [(label, _href(p, out_dir)) for label, p in files]


def _comparisons(runs: Sequence[RunData], models: Sequence[str]) -> list[dict[str, Any]]:
    """Each later run against the reference: its changes and one figure per model."""
    comparisons = []
    for changes in compare_mod.compare_runs(runs):
        if not changes:
            continue
        figs = []
        for m in models:
            mc = [c for c in changes if c.model == m]
            fig = plots.comparison_plot(mc, f"{m}: {changes[0].run} vs {changes[0].reference}")
            if fig:
                figs.append(fig)
        comparisons.append({"reference": changes[0].reference, "run": changes[0].run,
                            "changes": changes, "figures": figs})
    return comparisons


def render(runs: Sequence[RunData], out_dir: Path, title: str | None = None) -> tuple[str, dict[str, int]]:
    """The report's HTML for ``runs`` (links relative to ``out_dir``) and its counts."""
    import jinja2

    entries = [e for r in runs for e in r.entries]
    models: list[str] = []
    for e in entries:
        if e.model not in models:
            models.append(e.model)
    sections: list[ModelSection] = [build_model_section(m, [e for e in entries if e.model == m], runs, i)
                                    for i, m in enumerate(models)]

    all_metrics = metric_order(entries)
    frontiers: dict[str, list[str]] = {}
    joint: set[str] = set()
    for s in sections:
        frontiers.update(metric_frontiers(s.entries, s.metrics))
        joint |= {e.key for e in s.frontier_joint}
    columns, rows = build_table(entries, runs, all_metrics, frontiers, joint)
    comparisons = _comparisons(runs, models)
    searches = [search.section(t, r.name) for r in runs if (t := search.load(r.path)) is not None]
    not_measured = [e for e in entries if not e.ok]
    figures = (sum(len(s.figures) for s in sections) + sum(len(c["figures"]) for c in comparisons)
               + sum(len(s.plots) for s in searches))
    grids = sum(1 for s in sections for r in s.runs for g in r.grids if g.uri)

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["wbr"] = wbr
    template = env.get_template("report.html.j2")
    strategies = len({(e.model, e.strategy) for e in entries})
    html = template.render(
        title=title or ("accelbench report: " + ", ".join(models) if models else "accelbench report"),
        generated=datetime.now().astimezone().isoformat(timespec="seconds"),
        version=__version__,
        runs=[{"run": r, "env": _env_rows(r.environment), "config": _env_rows(r.config),
               "files": _run_files(r, out_dir)} for r in runs],
        sections=sections,
        columns=columns,
        rows=rows,
        comparisons=comparisons,
        searches=searches,
        not_measured=not_measured,
        n_entries=len(entries),
        n_strategies=strategies,
        n_figures=figures,
        multi_run=len(runs) > 1,
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=(TEMPLATES / "report.js").read_text(encoding="utf-8"),
    )
    return html, {"figures": figures, "grids": grids, "entries": len(entries)}


def build_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                 title: str | None = None) -> Report:
    """Read ``run_dirs`` (run directories or results files) and write one HTML file to ``out``.

    With several runs, the first is the reference the others are compared with.
    """
    started = time.perf_counter()
    runs = load_runs(list(run_dirs))
    if not any(e.ok for run in runs for e in run.entries):
        n = sum(len(run.entries) for run in runs)
        what = "no records" if not n else f"{n} record(s), none of them ok (all failed or unsupported)"
        raise ReportError(f"nothing to report in {', '.join(map(str, run_dirs))}: {what}")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    html, counts = render(runs, out_path.parent, title)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out_path)
    return Report(out_path, counts["figures"], counts["grids"], counts["entries"], time.perf_counter() - started)


__all__ = ["Report", "ReportError", "build_report", "embed_png", "fmt", "render", "wbr"]
