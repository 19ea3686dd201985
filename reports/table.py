"""The report's strategy table: one sortable row per strategy, its cells formatted for the
page with the value each sorts by. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.core import results
from reports.data import (
    COLD_LABELS,
    Entry,
    MetricMeta,
    RunData,
    cold_fields,
    finite,
    number,
    speedup_verdicts,
    undeclared_metrics,
)
from reports.plots.style import fmt_value, short


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
    """A table column: its heading, the heading's tooltip, whether it sorts as numbers."""

    label: str
    title: str = ""
    numeric: bool = True


def fmt(v: float | None, unit: str = "") -> str:
    """``v`` formatted as :func:`~reports.plots.style.fmt_value`, with ``unit`` when it is a value."""
    text = fmt_value(v)
    return f"{text} {unit}".rstrip() if text != "-" and unit else text


def _sort_value(v: float | None) -> float | None:
    if v is None or math.isnan(v):
        return None
    return v


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
                        title=e.error or "; ".join(caveats), sub=short(e.error or "", 60)))
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


__all__ = ["Cell", "Column", "build_table", "fmt"]
