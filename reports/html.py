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

import base64
import io
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import results
from reports import compare as compare_mod
from reports import plots
from reports.data import (
    COLD_LABELS,
    Entry,
    MetricMeta,
    RunData,
    cold_fields,
    finite,
    load_runs,
    metric_order,
    number,
    undeclared_metrics,
)
from reports.pareto import pareto_front_2d, pareto_mask

TEMPLATES = Path(__file__).parent / "templates"
#: Image grids wider than this are scaled down before embedding (the file is linked).
MAX_GRID_WIDTH = 1600


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    path: Path
    figures: int
    grids: int
    entries: int
    seconds: float


@dataclass
class Cell:
    """A table cell: shown text, an optional second line, the value it sorts by."""

    text: str
    sort: float | str | None = None
    sub: str = ""
    cls: str = ""
    title: str = ""
    href: str = ""


@dataclass
class Column:
    label: str
    title: str = ""
    numeric: bool = True


@dataclass
class Grid:
    """One strategy's image grid."""

    key: str
    label: str
    status: str
    uri: str | None
    note: str = ""
    is_baseline: bool = False
    pixelated: bool = True
    quality: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RunSection:
    """What the report shows per run within one model: images, steps, timeline."""

    run: RunData
    grids: list[Grid] = field(default_factory=list)
    prompts: list[tuple[int, str, str]] = field(default_factory=list)
    steps: plots.Plot | None = None
    timeline: plots.Plot | None = None


@dataclass
class ModelSection:
    name: str
    anchor: str
    entries: list[Entry]
    metrics: list[MetricMeta]
    overview: list[tuple[str, str]] = field(default_factory=list)
    frontier_joint: list[Entry] = field(default_factory=list)
    pareto: list[plots.Plot] = field(default_factory=list)
    energy: list[plots.Plot] = field(default_factory=list)
    energy_note: str = ""
    speed: plots.Plot | None = None
    runs: list[RunSection] = field(default_factory=list)

    @property
    def figures(self) -> list[plots.Plot]:
        out = [*self.pareto, *self.energy]
        if self.speed:
            out.append(self.speed)
        for r in self.runs:
            out += [p for p in (r.steps, r.timeline) if p]
        return out


# -- helpers ------------------------------------------------------------------------------------
def fmt(v: float | None, unit: str = "") -> str:
    text = plots.fmt_value(v)
    return f"{text} {unit}".rstrip() if text != "-" and unit else text


def wbr(text: Any):
    """``text`` HTML-escaped, with line-break opportunities after ``+`` and ``,`` (long
    strategy stacks wrap at their joins instead of mid-word)."""
    from markupsafe import Markup, escape

    return Markup(str(escape(text)).replace("+", "+<wbr>").replace(",", ",<wbr>"))


def _sort_value(v: float | None) -> float | None:
    if v is None or math.isnan(v):
        return None
    return v


def _href(target: Path, out_dir: Path) -> str:
    try:
        rel = os.path.relpath(target.resolve(), out_dir.resolve())
        return quote(Path(rel).as_posix())
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()


def embed_png(path: Path, max_width: int = MAX_GRID_WIDTH) -> str:
    """A PNG file as a data URI, scaled down (PIL) when wider than ``max_width``."""
    data = path.read_bytes()
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            if im.width > max_width:
                ratio = max_width / im.width
                small = im.convert("RGB").resize((max_width, max(1, round(im.height * ratio))), Image.LANCZOS)
                buf = io.BytesIO()
                small.save(buf, format="PNG", optimize=True)
                data = buf.getvalue()
    except ImportError:  # pragma: no cover - pillow ships with matplotlib
        pass
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _common_metrics(entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> list[MetricMeta]:
    ok = [e for e in entries if e.ok]
    return [m for m in metrics if ok and all(m.name in e.quality for e in ok)]


def _joint_frontier(entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> list[Entry]:
    """Entries on the frontier of latency per image and every metric all of them have."""
    ok = [e for e in entries if e.ok and finite(e.ms_per_image)]
    common = _common_metrics(ok, metrics)
    if not ok:
        return []
    points = [[e.ms_per_image] + [e.quality[m.name] for m in common] for e in ok]
    mask = pareto_mask(points, [False] + [m.higher_is_better for m in common])
    on = [e for e, keep in zip(ok, mask, strict=True) if keep]
    return sorted(on, key=lambda e: e.ms_per_image)


def _metric_frontiers(entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> dict[str, list[str]]:
    """entry key -> labels of the metrics on whose latency frontier it lies."""
    out: dict[str, list[str]] = {}
    for m in metrics:
        pts = plots.pareto_points(entries, m, "latency")
        front = pareto_front_2d([p.x for p in pts], [p.y for p in pts], False, m.higher_is_better)
        for i in front:
            out.setdefault(pts[i].entry.key, []).append(m.label)
    return out


def _speedup_cell(e: Entry, word: str | None = None) -> Cell:
    sp = e.speedup
    r = number(sp.get("ratio"))
    if not finite(r):
        return Cell("-")
    lo, hi = number(sp.get("ci_low")), number(sp.get("ci_high"))
    p = number(sp.get("p_value"))
    cls = {"faster": "good", "slower": "bad"}.get(word or "", "")
    sub = f"[{fmt(lo)}, {fmt(hi)}]" if finite(lo) and finite(hi) else ""
    if not e.is_baseline and word:
        sub = f"{sub} {word}".strip()
    method = str(sp.get("method") or "")
    title = f"p = {p:.3g}; {method}" if p is not None else method
    return Cell(f"{fmt(r)}\u00d7", r, sub=sub, cls=cls, title=title)


def _size_cells(e: Entry) -> list[Cell]:
    size = e.record.get("model_size") or {}
    params = number(size.get("params") or e.row.get("params"))
    flops = number(size.get("flops_per_step"))
    per = size.get("per") or "step"
    method = str(size.get("method") or "")
    return [
        Cell(fmt(params / 1e6) if finite(params) else "-", _sort_value(params / 1e6 if finite(params) else None)),
        Cell(fmt(flops / 1e9) if finite(flops) else "-", _sort_value(flops / 1e9 if finite(flops) else None),
             sub=f"per {per}" if finite(flops) else "", title=method),
    ]


# -- table ----------------------------------------------------------------------------------------
def build_table(entries: Sequence[Entry], runs: Sequence[RunData], metrics: Sequence[MetricMeta],
                frontiers: dict[str, list[str]], joint: set[str]) -> tuple[list[Column], list[list[Cell]]]:
    """The strategy table: columns and one row of cells per entry."""
    multi_model = len({e.model for e in entries}) > 1
    multi_run = len(runs) > 1
    has_energy = any(finite(e.energy_j_per_image) for e in entries)
    extra_quality = undeclared_metrics(entries)
    colds = cold_fields(entries)
    # Figures load() adds beyond its fixed columns (tokens/s, acceptance rate of
    # autoregressive models...), shown where any record has them.
    extra_stats: list[str] = []
    for e in entries:
        for k, v in e.row.items():
            if k not in results.COLUMNS and k not in extra_stats and number(v) is not None:
                extra_stats.append(k)

    cols: list[Column] = []
    if multi_model:
        cols.append(Column("model", numeric=False))
    if multi_run:
        cols.append(Column("run", numeric=False))
    cols += [
        Column("strategy", numeric=False),
        Column("status", numeric=False),
        Column("ms / call", "median latency of one generation call, with its 95% confidence interval"),
        Column("ms / image", "median latency divided by the batch size"),
        Column("speedup", "how many times faster than the baseline, with its 95% interval and verdict; "
                          "interleaved runs: median of per-round ratios (order-statistic interval, sign "
                          "test), else ratio of medians (bootstrap, Mann-Whitney U). faster/slower: the "
                          "interval excludes no change and the test agrees, false discovery rate held at "
                          "5% over the run's stacks; equivalent: the interval within +-5%; "
                          "inconclusive: neither"),
        Column("images / s"),
        Column("peak mem MiB", "this stack's own memory: the bytes its weights hold (shared storage once) "
                               "plus the peak of one call it made alone (the allocator's on GPUs, "
                               "resident memory on the CPU)"),
        Column("params M", "parameters of every component, in millions"),
        Column("GFLOPs", "billions of floating-point operations of one denoising step (or one decoded token), "
                         "counted by torch's FLOP counter on one image"),
    ]
    if has_energy:
        cols.append(Column("energy J / image"))
    for k in extra_stats:
        cols.append(Column(k.replace("_per_", " / ").replace("_", " ")))
    for m in metrics:
        cols.append(Column(f"{m.label} {m.arrow}", f"{m.description} ({'higher' if m.higher_is_better else 'lower'} is better)"))
    for name in extra_quality:
        cols.append(Column(name, "no direction declared for this value"))
    for k in colds:
        cols.append(Column(COLD_LABELS.get(k, k.replace("_", " ")), "one-off cost, not part of the timed loop"))
    cols.append(Column("Pareto", "frontiers of latency per image against each metric this strategy is on; "
                                 "\u2605: on the joint frontier of latency and all metrics", numeric=False))

    rows: list[list[Cell]] = []
    from reports.data import speedup_verdicts

    words = speedup_verdicts(entries)
    for e in entries:
        row: list[Cell] = []
        if multi_model:
            row.append(Cell(e.model, e.model))
        if multi_run:
            row.append(Cell(e.run.short, e.run.index, title=str(e.run.path)))
        row.append(Cell(e.strategy, e.strategy, cls="name", href=f"#img-{e.key}" if e.images_path else ""))
        caveats = [str(c) for c in e.record.get("caveats") or []]
        row.append(Cell(e.status + (" \u26a0" if caveats else ""), e.status,
                        cls="" if e.ok else "status-" + e.status,
                        title=e.error or "; ".join(caveats), sub=plots.short(e.error or "", 60)))
        lat = number(e.row.get("latency_ms_median"))
        lo, hi = number(e.row.get("latency_ms_ci_low")), number(e.row.get("latency_ms_ci_high"))
        n_it = e.row.get("iterations")
        row.append(Cell(fmt(lat), _sort_value(lat),
                        sub=f"[{fmt(lo)}, {fmt(hi)}]" if finite(lo) and finite(hi) else "",
                        title=f"{n_it} timed calls" if n_it else ""))
        row.append(Cell(fmt(e.ms_per_image), _sort_value(e.ms_per_image)))
        row.append(_speedup_cell(e, words.get(id(e))) if e.ok else Cell("-"))
        ips = number(e.row.get("images_per_s"))
        row.append(Cell(fmt(ips), _sort_value(ips)))
        mem = number(e.row.get("peak_mem_mb"))
        row.append(Cell(fmt(mem), _sort_value(mem)))
        row += _size_cells(e) if e.ok else [Cell("-"), Cell("-")]
        if has_energy:
            en = e.energy_j_per_image
            method = (e.record.get("energy") or {}).get("method")
            row.append(Cell(fmt(en), _sort_value(en), title=f"method: {method}" if method else ""))
        for k in extra_stats:
            v = number(e.row.get(k))
            row.append(Cell(fmt(v), _sort_value(v)))
        for m in metrics:
            v = e.quality.get(m.name)
            std = e.quality.get(f"{m.name}_std")
            sort = None if v is None or math.isnan(v) else (v if math.isfinite(v) else math.copysign(1e308, v))
            row.append(Cell(fmt(v), sort, sub=f"\u00b1 {fmt(std)}" if std is not None else ""))
        for name in extra_quality:
            v = e.quality.get(name)
            row.append(Cell(fmt(v), _sort_value(v)))
        for k in colds:
            v = e.cold.get(k)
            row.append(Cell(fmt(v), _sort_value(v)))
        fr = frontiers.get(e.key, [])
        star = "\u2605 " if e.key in joint else ""
        row.append(Cell((star + ", ".join(fr)) or "-", (len(fr) + (10 if star else 0)) or None, cls="pareto"))
        rows.append(row)
    return cols, rows


# -- sections -------------------------------------------------------------------------------------
def _grids(run_entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> list[Grid]:
    grids = []
    ordered = sorted(run_entries, key=lambda e: (not e.is_baseline,))
    for e in ordered:
        path = e.images_path
        quality = [(m.label, fmt(e.quality.get(m.name))) for m in metrics if m.name in e.quality]
        if path is None:
            note = "no images: " + (e.error or e.status) if not e.ok else "no images recorded"
            grids.append(Grid(e.key, e.label, e.status, None, note, e.is_baseline))
            continue
        if not path.is_file():
            grids.append(Grid(e.key, e.label, e.status, None, f"image file missing: {path}", e.is_baseline))
            continue
        grids.append(Grid(e.key, e.label, e.status, embed_png(path), "", e.is_baseline, quality=quality))
    return grids


def _prompts(run_entries: Sequence[Entry]) -> list[tuple[int, str, str]]:
    for e in sorted(run_entries, key=lambda e: not e.is_baseline):
        if e.image_prompts:
            seeds = e.image_seeds
            return [(i + 1, p, str(seeds[i]) if i < len(seeds) else "") for i, p in enumerate(e.image_prompts)]
    return []


def _overview(entries: Sequence[Entry], joint: Sequence[Entry]) -> list[tuple[str, str]]:
    ok = [e for e in entries if e.ok]
    base = [e for e in ok if e.is_baseline]
    facts: list[tuple[str, str]] = []
    facts.append(("strategies", f"{len(entries)} ({len(ok)} measured, "
                  f"{sum(e.status == 'unsupported' for e in entries)} not applicable, "
                  f"{sum(e.status == 'failed' for e in entries)} failed)"))
    for b in base:
        facts.append(("baseline" if b.run.single else f"baseline, {b.run.short}",
                      f"{fmt(b.ms_per_image, 'ms')} per image, {fmt(number(b.row.get('images_per_s')))} images/s "
                      f"(batch {b.batch_size}, {b.row.get('steps') or '?'} steps, {b.row.get('device') or '?'})"))
    fastest = min((e for e in ok if finite(e.ms_per_image)), key=lambda e: e.ms_per_image, default=None)
    if fastest is not None:
        sp = number(fastest.speedup.get("ratio"))
        facts.append(("fastest", f"{fastest.label}: {fmt(fastest.ms_per_image, 'ms')} per image"
                                 + (f", {fmt(sp)}\u00d7 the baseline" if finite(sp) else "")))
    if joint:
        facts.append(("Pareto-optimal on all metrics", ", ".join(e.label for e in joint)))
    schedules = {str((e.record.get("schedule") or {}).get("name")) for e in ok if e.record.get("schedule")}
    if schedules:
        words = {"interleaved": "interleaved (rounds, order reversed every round: robust to a "
                                "machine whose speed changes)",
                 "sequential": "sequential (each stack on its own: speedups move with the "
                               "machine's drift)"}
        facts.append(("timed", "; ".join(words.get(s, s) for s in sorted(schedules))))
    slower = [f"{e.label}: {'; '.join(e.record['slower_because'])}" for e in entries
              if e.record.get("slower_because")]
    if slower:
        facts.append(("why slower", " \u2014 ".join(slower)))
    caveats: list[str] = []
    for e in entries:
        for c in e.record.get("caveats") or []:
            text = f"{e.label}: {c}" if not str(c).startswith("other processes") else str(c)
            if text not in caveats:
                caveats.append(text)
    if caveats:
        facts.append(("caveats", "; ".join(caveats)))
    missing: dict[str, str] = {}
    for e in ok:
        for name, why in e.unavailable_metrics.items():
            missing.setdefault(name, why)
    if missing:
        facts.append(("metrics not computed", "; ".join(f"{k}: {v}" for k, v in missing.items())))
    return facts


def build_model_section(name: str, entries: list[Entry], runs: Sequence[RunData], index: int) -> ModelSection:
    """Everything the report shows for one model."""
    metrics = metric_order(entries)
    section = ModelSection(name=name, anchor=f"model-{index}", entries=entries, metrics=metrics)
    section.frontier_joint = _joint_frontier(entries, metrics)
    section.overview = _overview(entries, section.frontier_joint)
    for m in metrics:
        p = plots.pareto_plot(entries, m, "latency", name)
        if p:
            section.pareto.append(p)
    if any(e.ok and finite(e.energy_j_per_image) for e in entries):
        for m in metrics:
            p = plots.pareto_plot(entries, m, "energy", name)
            if p:
                section.energy.append(p)
    else:
        reasons = {str((e.record.get("energy") or {}).get("reason") or "") for e in entries if e.ok}
        reasons.discard("")
        section.energy_note = "No energy was measured" + (f": {'; '.join(sorted(reasons))}" if reasons else ".")
    section.speed = plots.speed_plot(entries, name)
    for run in runs:
        run_entries = [e for e in entries if e.run is run]
        if not run_entries:
            continue
        title = name if len(runs) == 1 else f"{name}, {run.short}"
        rs = RunSection(run=run, grids=_grids(run_entries, metrics), prompts=_prompts(run_entries))
        rs.steps = plots.step_plot(run_entries, f"{title}: per-step latency")
        rs.timeline = plots.timeline_plot(run_entries, f"{title}: sampler timeline")
        section.runs.append(rs)
    return section


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


# -- entry point ----------------------------------------------------------------------------------
def render(runs: Sequence[RunData], out_dir: Path, title: str | None = None) -> tuple[str, dict[str, int]]:
    """The report's HTML for ``runs`` (links relative to ``out_dir``) and its counts."""
    import jinja2

    from bench import __version__

    entries = [e for r in runs for e in r.entries]
    models: list[str] = []
    for e in entries:
        if e.model not in models:
            models.append(e.model)
    sections = [build_model_section(m, [e for e in entries if e.model == m], runs, i)
                for i, m in enumerate(models)]

    all_metrics = metric_order(entries)
    frontiers: dict[str, list[str]] = {}
    joint: set[str] = set()
    for s in sections:
        frontiers.update(_metric_frontiers(s.entries, s.metrics))
        joint |= {e.key for e in s.frontier_joint}
    columns, rows = build_table(entries, runs, all_metrics, frontiers, joint)

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

    from reports import search

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


class ReportError(ValueError):
    """Inputs a report cannot be made of; the message says why."""


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


__all__ = ["Report", "ReportError", "build_report", "embed_png", "render"]
