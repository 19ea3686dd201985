"""The report's figures, drawn with seaborn and matplotlib and returned as embedded PNGs.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot and no
global backend switch), inside a seaborn style context, then encoded as base64 PNG data URIs
so the report is one self-contained file. Nothing here imports torch.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reports.data import Entry, MetricMeta, finite
from reports.pareto import pareto_front_2d

DPI = 144
FRONT_COLOR = "#1f6fb4"
DOMINATED_COLOR = "#a3a9b0"
FASTER_COLOR = "#2a9d6f"
SLOWER_COLOR = "#d1495b"
NEUTRAL_COLOR = "#7d8590"
RUN_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h")
#: Frontier points are labelled by name up to this many, by number beyond.
MAX_NAMED_LABELS = 10
#: Per-step plots switch from lines to a heatmap beyond this many strategies.
MAX_STEP_LINES = 12


@dataclass
class Plot:
    """One embedded figure and what the page says about it."""

    kind: str
    title: str
    alt: str
    data_uri: str
    caption: str = ""
    #: Rows listed under the figure (the frontier's points, a timeline's segments).
    listing: list[dict[str, Any]] = field(default_factory=list)
    listing_columns: list[str] = field(default_factory=list)
    #: Widest the page shows it (CSS pixels), so text keeps the same size across figures.
    max_width: int = 800


@contextmanager
def style() -> Iterator[None]:
    """The report's seaborn style, for one figure."""
    import matplotlib as mpl
    import seaborn as sns

    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=0.85),
        "font.family": "DejaVu Sans",
        "axes.titleweight": "bold",
        "axes.titlesize": 11,
        "figure.dpi": DPI,
    }
    with mpl.rc_context(rc):
        yield


def figure(width: float, height: float, **subplots: Any):
    """A figure of ``width`` x ``height`` inches on its own Agg canvas, and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # one cached renderer; a bare Figure makes a new one per text extent
    axes = fig.subplots(**subplots)
    return fig, axes


#: CSS pixels per figure inch: every figure shows at the same text size.
PX_PER_INCH = 96


def encode(fig) -> tuple[str, int]:
    """The figure as a PNG data URI and the width (CSS px) to show it at, at most."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return uri, int(fig.get_size_inches()[0] * PX_PER_INCH)


def short(text: str, limit: int = 34) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _log_axis(ax, values: Sequence[float], axis: str = "x") -> None:
    """A log axis with plain-number tick labels that stay readable over narrow ranges.

    Under a factor of 5 the ticks are "nice" linear values (20, 25, 30...), which a log
    locator would mostly leave unlabelled; wider ranges get 1-2-3-5, 1-2-5 or decade ticks.
    """
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())
    vals = [v for v in values if finite(v) and v > 0]
    if not vals:
        return
    lo, hi = min(vals), max(vals)
    pad = (hi / lo) ** 0.08 if hi > lo else 1.25
    lo_lim, hi_lim = lo / pad, hi * pad
    ratio = hi_lim / lo_lim
    if ratio < 5:
        ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo_lim, hi_lim)
        ticks = [t for t in ticks if lo_lim <= t <= hi_lim and t > 0]
        if len(ticks) >= 2:
            target.set_major_locator(FixedLocator(ticks))
    elif ratio < 30:
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    elif ratio < 1000:
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo_lim, hi_lim)


def fmt_value(v: float | None) -> str:
    """Compact, human formatting of a measured value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    if a >= 0.01 or a == 0:
        return f"{v:.3f}"
    return f"{v:.3g}"


# -- Pareto ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Point:
    entry: Entry
    x: float
    y: float


def pareto_points(entries: Sequence[Entry], metric: MetricMeta, x_kind: str) -> list[_Point]:
    """Measured points with both coordinates (``x_kind``: ``latency`` or ``energy``)."""
    points = []
    for e in entries:
        if not e.ok:
            continue
        x = e.ms_per_image if x_kind == "latency" else e.energy_j_per_image
        y = e.quality.get(metric.name)
        if not finite(x) or x <= 0 or y is None or math.isnan(y):
            continue
        points.append(_Point(e, float(x), float(y)))
    return points


def pareto_plot(entries: Sequence[Entry], metric: MetricMeta, x_kind: str, model: str) -> Plot | None:
    """Cost per image (log axis) against a quality metric; the frontier drawn and labelled.

    Directions come from ``metric.higher_is_better`` (quality) and cost (lower is better).
    Returns None when there is nothing to plot.
    """
    points = pareto_points(entries, metric, x_kind)
    if not points:
        return None
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    front = pareto_front_2d(xs, ys, x_higher_is_better=False, y_higher_is_better=metric.higher_is_better)
    on_front = set(front)
    x_label = "latency per image (ms, log scale)" if x_kind == "latency" else "energy per image (J, log scale)"
    x_unit = "ms" if x_kind == "latency" else "J"

    finite_y = [y for y in ys if math.isfinite(y)]
    lo, hi = (min(finite_y), max(finite_y)) if finite_y else (0.0, 1.0)
    span = (hi - lo) or (abs(hi) or 1.0)
    cap_hi, cap_lo = hi + 0.15 * span, lo - 0.15 * span
    draw_y = [y if math.isfinite(y) else (cap_hi if y > 0 else cap_lo) for y in ys]
    runs = sorted({p.entry.run.index for p in points})
    multi_run = len(runs) > 1

    with style():
        fig, ax = figure(7.0, 4.6)
        _scatter_points(ax, points, draw_y, on_front)
        fx = [xs[i] for i in front]
        fy = [draw_y[i] for i in front]
        if len(front) > 1:
            ax.plot(fx, fy, drawstyle="steps-post", color=FRONT_COLOR, linewidth=1.6, alpha=0.85, zorder=3)
        caps = [(cap, sign) for cap, sign in ((cap_hi, 1), (cap_lo, -1))
                if any(not math.isfinite(y) and np.sign(y) == sign for y in ys)]
        for cap, _ in caps:
            ax.axhline(cap, color="#555", linestyle=":", linewidth=0.9, zorder=1)
        floor = _noise_floor(points, metric.name)
        if floor is not None:
            mean, std = floor
            ax.axhspan(mean - 2 * std, mean + 2 * std, color=FASTER_COLOR, alpha=0.12, zorder=0, linewidth=0)
            ax.axhline(mean, color=FASTER_COLOR, alpha=0.6, linewidth=0.9, linestyle="--", zorder=0)
        _log_axis(ax, xs)
        ax.set_xlabel(f"{x_label}: lower is better")
        ax.set_ylabel(f"{metric.label}: {'higher' if metric.higher_is_better else 'lower'} is better")
        what = "latency" if x_kind == "latency" else "energy"
        ax.set_title(f"{short(model, 40)}: {metric.label} vs {what}")
        if caps:
            _infinite_ticks(ax, caps)
        named = len(front) <= MAX_NAMED_LABELS
        texts = [short(points[i].entry.label, 30) if named else str(k + 1) for k, i in enumerate(front)]
        _place_labels(ax, [xs[i] for i in front], [draw_y[i] for i in front], texts, list(zip(xs, draw_y, strict=True)))
        _better_arrow(ax, top=metric.higher_is_better)
        _pareto_legend(ax, points, multi_run, floor is not None)
        uri, width = encode(fig)

    listing = []
    for k, i in enumerate(front):
        e = points[i].entry
        sp = e.speedup.get("ratio")
        listing.append({
            "n": k + 1,
            "label": e.label,
            "key": e.key,
            "x": fmt_value(xs[i]) + f" {x_unit}",
            "y": fmt_value(ys[i]),
            "speedup": (fmt_value(float(sp)) + "\u00d7") if finite(_float(sp)) else "-",
        })
    n_dom = len(points) - len(front)
    missing = sum(1 for e in entries if e.ok) - len(points)
    not_measured = sum(1 for e in entries if not e.ok)
    caption = (
        f"{len(front)} of {len(points)} strategies on the frontier (blue, joined by the staircase of "
        f"the best {metric.label} reachable at each {what}); {n_dom} dominated (grey). "
        f"The star is the baseline."
        + (f" {missing} measured without a {what} or {metric.label} value are not drawn." if missing else "")
        + (f" {not_measured} not measured (see the table)." if not_measured else "")
        + (" The green band is what real images score (noise floor, mean \u00b1 2 standard deviations "
           "across draws of the same size): differences inside it mean nothing." if _noise_floor(points, metric.name) else "")
    )
    return Plot(
        kind=f"pareto-{x_kind}",
        title=f"{metric.label} vs {what} per image",
        alt=f"Pareto plot of {metric.label} against {what} per image for {model}",
        data_uri=uri,
        max_width=width,
        caption=caption,
        listing=listing,
        listing_columns=["#", "strategy", f"{what}/image", metric.label, "speedup"],
    )


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


#: Label offsets tried in turn (points from the point; text anchored left or right).
_LABEL_SPOTS = ((6, 5, "left"), (6, -14, "left"), (-6, 5, "right"), (-6, -14, "right"),
                (6, 16, "left"), (-6, 16, "right"), (6, -25, "left"), (-6, -25, "right"))


def _place_labels(ax, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                  avoid: Sequence[tuple[float, float]], fontsize: float = 7.5) -> None:
    """Annotate points, each at the first nearby spot that overlaps no label placed before,
    no drawn point and stays inside the axes (a greedy pass on estimated text boxes, in
    display pixels; the first spot when none is free)."""
    ax.get_ylim()  # settle autoscaling so data->pixel transforms are final
    to_px = ax.transData.transform
    dpi = ax.figure.dpi
    px = dpi / 72.0
    frame = ax.get_window_extent()
    dots = to_px(np.asarray(avoid, dtype=float)) if len(avoid) else np.zeros((0, 2))
    placed: list[tuple[float, float, float, float]] = []
    for x, y, text in zip(xs, ys, texts, strict=True):
        cx, cy = to_px((x, y))
        w, h = 0.58 * fontsize * len(text) * px, 1.25 * fontsize * px
        choice = _LABEL_SPOTS[0]
        for dx, dy, ha in _LABEL_SPOTS:
            x0 = cx + dx * px - (w if ha == "right" else 0)
            y0 = cy + dy * px
            box = (x0, y0, x0 + w, y0 + h)
            inside = box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0 and box[3] <= frame.y1
            clear = not any(_overlap(box, b) for b in placed)
            free = not ((dots[:, 0] > box[0] - 3) & (dots[:, 0] < box[2] + 3)
                        & (dots[:, 1] > box[1] - 3) & (dots[:, 1] < box[3] + 3)).any()
            if inside and clear and free:
                choice = (dx, dy, ha)
                break
        dx, dy, ha = choice
        x0 = cx + dx * px - (w if ha == "right" else 0)
        placed.append((x0, cy + dy * px, x0 + w, cy + dy * px + h))
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va="bottom",
                    fontsize=fontsize, color="#0b2e4f", zorder=5,
                    bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75})


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _infinite_ticks(ax, caps: Sequence[tuple[float, int]]) -> None:
    """Label the lines where infinite values are drawn with an infinity tick."""
    lo, hi = ax.get_ylim()
    margin = 0.07 * (hi - lo)
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi and all(abs(t - c) > margin for c, _ in caps)]
    labels = list(ax.yaxis.get_major_formatter().format_ticks(ticks))
    ax.set_yticks(ticks + [c for c, _ in caps], labels + ["\u221e" if s > 0 else "-\u221e" for _, s in caps])
    ax.set_ylim(lo, hi)


def _better_arrow(ax, top: bool) -> None:
    corner = (0.03, 0.96 if top else 0.04)
    start = (0.15, 0.80 if top else 0.20)
    ax.annotate("better", xy=corner, xycoords="axes fraction", xytext=start, textcoords="axes fraction",
                fontsize=8, color=FASTER_COLOR, ha="center", va="center",
                arrowprops={"arrowstyle": "->", "color": FASTER_COLOR, "lw": 1.4})


def _scatter_points(ax, points: Sequence[_Point], draw_y: Sequence[float], on_front: set[int]) -> None:
    """Dominated points set back in grey, frontier points in colour; the marker says which
    run (a star for the baseline). Two seaborn scatter calls, one collection each."""
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame({
        "x": [p.x for p in points],
        "y": list(draw_y),
        "front": [i in on_front for i in range(len(points))],
        "kind": ["baseline" if p.entry.is_baseline else f"run {p.entry.run.index + 1}" for p in points],
    })
    markers = {k: ("*" if k == "baseline" else RUN_MARKERS[(int(k.split()[1]) - 1) % len(RUN_MARKERS)])
               for k in frame["kind"].unique()}
    sizes = {k: (200 if k == "baseline" else 48) for k in markers}
    back, fore = frame[~frame["front"]], frame[frame["front"]]
    if len(back):
        sns.scatterplot(data=back, x="x", y="y", style="kind", size="kind", markers=markers, sizes=sizes,
                        color=DOMINATED_COLOR, alpha=0.55, edgecolor="none", legend=False, ax=ax, zorder=2)
    if len(fore):
        sns.scatterplot(data=fore, x="x", y="y", style="kind", size="kind", markers=markers,
                        sizes={k: v * 1.3 for k, v in sizes.items()}, color=FRONT_COLOR,
                        edgecolor="#0b2e4f", linewidth=0.8, legend=False, ax=ax, zorder=4)


def _noise_floor(points: Sequence[_Point], metric: str) -> tuple[float, float] | None:
    """(mean, std) of what real images score on ``metric``, where the records have it."""
    for p in points:
        floor = p.entry.noise_floor.get(metric)
        if floor:
            return floor["mean"], floor["std"]
    return None


def _pareto_legend(ax, points: Sequence[_Point], multi_run: bool, floor: bool = False) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], marker="o", linestyle="-", color=FRONT_COLOR, label="frontier"),
        Line2D([], [], marker="o", linestyle="", color=DOMINATED_COLOR, label="dominated"),
        Line2D([], [], marker="*", linestyle="", color="#555", markersize=11, label="baseline"),
    ]
    if floor:
        handles.append(Patch(color=FASTER_COLOR, alpha=0.25, label="real images \u00b12\u03c3"))
    if multi_run:
        for idx in sorted({p.entry.run.index for p in points}):
            handles.append(Line2D([], [], marker=RUN_MARKERS[idx % len(RUN_MARKERS)], linestyle="",
                                  color="#555", label=f"run {idx + 1}"))
    ax.legend(handles=handles, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=len(handles), frameon=False, handletextpad=0.3, columnspacing=1.2)


# -- speed ----------------------------------------------------------------------------------
def speed_plot(entries: Sequence[Entry], model: str) -> Plot | None:
    """Left: speedup over the baseline with its 95% interval, coloured by significance.
    Right: every timed call's latency per image. One row per strategy, fastest first."""
    from matplotlib.lines import Line2D

    rows = [e for e in entries if e.ok and e.latencies_ms]
    if not rows:
        return None
    rows.sort(key=lambda e: (e.ms_per_image if finite(e.ms_per_image) else math.inf, e.key))
    n = len(rows)
    height = max(2.4, 0.25 * n + 1.4)
    # Speedup points and intervals, gathered so each panel draws a few collections only.
    pts_y, pts_x, pts_c, pts_m = [], [], [], []
    seg_y, seg_lo, seg_hi, seg_c = [], [], [], []
    from reports.data import speedup_verdicts

    words = speedup_verdicts(rows)
    for y, e in enumerate(rows):
        sp = e.speedup
        r, lo, hi = _float(sp.get("ratio")), _float(sp.get("ci_low")), _float(sp.get("ci_high"))
        if not finite(r) or r <= 0:
            continue
        color = {"faster": FASTER_COLOR, "slower": SLOWER_COLOR}.get(words.get(id(e), ""),
                                                                    NEUTRAL_COLOR)
        pts_y.append(y)
        pts_x.append(r)
        pts_c.append(color)
        pts_m.append(e.is_baseline)
        if finite(lo) and finite(hi) and lo > 0:
            seg_y.append(y)
            seg_lo.append(lo)
            seg_hi.append(hi)
            seg_c.append(color)
    lat_x, lat_y, med_x = [], [], []
    for y, e in enumerate(rows):
        vals = np.asarray(e.latencies_ms_per_image)
        lat_x.append(vals)
        lat_y.append(y + (np.random.default_rng(y).random(vals.size) - 0.5) * 0.35)
        med_x.append(float(np.median(vals)))
    all_ms = np.concatenate(lat_x)

    with style():
        fig, (ax_s, ax_l) = figure(9.0, height, ncols=2, sharey=True, width_ratios=[1, 1.25])
        if seg_y:
            ax_s.hlines(seg_y, seg_lo, seg_hi, colors=seg_c, linewidth=2.2)
        xs, ys, cs = np.asarray(pts_x), np.asarray(pts_y), np.asarray(pts_c, dtype=object)
        star = np.asarray(pts_m, dtype=bool)
        if (~star).any():
            ax_s.scatter(xs[~star], ys[~star], c=list(cs[~star]), s=30, zorder=3)
        if star.any():
            ax_s.scatter(xs[star], ys[star], c=list(cs[star]), s=90, marker="*", zorder=3)
        ax_s.axvline(1.0, color="#333", linewidth=0.9, linestyle="--")
        _log_axis(ax_s, pts_x + seg_lo + seg_hi + [1.0])
        ax_s.set_xlabel("speedup vs baseline (\u00d7, log)\n> 1 is faster")
        ax_s.set_title("speedup, 95% interval")
        ax_s.set_yticks(range(n), [short(e.label, 36) for e in rows])
        ax_s.set_ylim(n - 0.5, -0.5)

        ax_l.scatter(all_ms, np.concatenate(lat_y), s=9, alpha=0.55, color=FRONT_COLOR, edgecolor="none")
        ax_l.vlines(med_x, np.arange(n) - 0.32, np.arange(n) + 0.32, colors="#0b2e4f", linewidth=2)
        _log_axis(ax_l, all_ms.tolist())
        ax_l.set_xlabel("latency per image (ms, log)\nevery timed call; bar: median")
        ax_l.set_title("latency distribution")
        fig.legend(handles=[
            Line2D([], [], color=FASTER_COLOR, lw=2.2, label="faster"),
            Line2D([], [], color=SLOWER_COLOR, lw=2.2, label="slower"),
            Line2D([], [], color=NEUTRAL_COLOR, lw=2.2, label="equivalent or inconclusive"),
        ], fontsize=7.5, loc="outside lower center", ncol=3, frameon=False)
        uri, width = encode(fig)
    return Plot(
        kind="speed",
        title="Speedup and latency distribution",
        alt=f"Speedup with 95% intervals and per-call latency for each strategy of {model}",
        data_uri=uri,
        max_width=width,
        caption=(
            "Speedup is the baseline's median latency over the strategy's, with a bootstrap 95% "
            "interval; colour marks a two-sided Mann-Whitney U test on the raw latencies "
            "(p < 0.05). Right: every timed call, per image, with the median as a bar."
        ),
    )


# -- per-step ---------------------------------------------------------------------------------
def _median_steps(e: Entry) -> list[float]:
    its = [it for it in e.step_times_ms if it]
    if not its:
        return []
    width = max(len(it) for it in its)
    grid = np.full((len(its), width), np.nan)
    for r, it in enumerate(its):
        grid[r, : len(it)] = it
    with np.errstate(all="ignore"):
        return [float(v) for v in np.nanmedian(grid, axis=0)]


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=12, integer=True, min_n_ticks=1)


def step_plot(entries: Sequence[Entry], title: str) -> Plot | None:
    """Median latency of each denoising step: lines for a few strategies, a heatmap for many."""
    rows = [(e, _median_steps(e)) for e in entries if e.ok]
    rows = [(e, s) for e, s in rows if s]
    if not rows:
        return None
    import seaborn as sns

    with style():
        if len(rows) <= MAX_STEP_LINES:
            fig, ax = figure(7.0, 3.8)
            palette = sns.color_palette("tab10", len(rows))
            for color, (e, s) in zip(palette, rows, strict=True):
                ax.plot(np.arange(1, len(s) + 1), s, marker="o", markersize=3, linewidth=1.4,
                        color=color, label=short(e.label, 30))
            ax.set_xlabel("step")
            ax.set_ylabel("median step latency (ms)")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
            kind = "lines"
        else:
            width = max(len(s) for _, s in rows)
            grid = np.full((len(rows), width), np.nan)
            for r, (_, s) in enumerate(rows):
                grid[r, : len(s)] = s
            fig, ax = figure(9.0, max(2.5, 0.24 * len(rows) + 1.2))
            # imshow with seaborn's colormap: sns.heatmap renders the whole figure once more
            # to check tick overlap, which doubles the cost at 50 strategies.
            mesh = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest",
                             cmap=sns.color_palette("mako_r", as_cmap=True),
                             extent=(0.5, width + 0.5, len(rows) - 0.5, -0.5))
            fig.colorbar(mesh, ax=ax, label="median step latency (ms)", pad=0.01, fraction=0.03, aspect=40)
            ax.set_yticks(range(len(rows)), [short(e.label, 36) for e, _ in rows])
            ax.xaxis.set_major_locator(_integer_locator())
            ax.grid(False)
            ax.set_xlabel("step")
            ax.tick_params(axis="y", labelsize=7)
            kind = "heatmap"
        ax.set_title(short(title, 70))
        uri, width = encode(fig)
    return Plot(
        kind="steps",
        title="Per-step latency",
        alt=f"Per-step latency ({kind}) for {title}",
        data_uri=uri,
        max_width=width,
        caption="The median over timed calls of each step's duration, from the pipeline's step callback "
        "(the first step includes any work done before the denoising loop).",
    )


# -- timelines --------------------------------------------------------------------------------
#: Panels of the timeline and the series columns each draws (by name ending). Columns in no
#: group (``iteration``, cumulative ``energy_j``, bitmasks) are not drawn.
_GROUPS = (
    ("memory (MiB)", ("_mb",)),
    ("power (W)", ("_w",)),
    ("utilisation (%)", ("percent", "util_gpu", "util_mem", "_util")),
    ("temperature (\u00b0C)", ("_c",)),
    ("clock (MHz)", ("_mhz",)),
)


def _group_of(column: str) -> str | None:
    lower = column.lower()
    for name, suffixes in _GROUPS:
        if any(lower.endswith(s) for s in suffixes):
            return name
    return None


def timeline_plot(entries: Sequence[Entry], title: str) -> Plot | None:
    """The sampler's series (memory, power, utilisation...) of every strategy, back to back.

    Each strategy's samples start where the previous one's end (a small gap between), on its
    own clock from its first sample; the dotted line in each segment marks where warm-up ends
    and the timed calls begin. Returns None when no entry has a series.
    """
    segments = []
    for e in entries:
        if not e.ok:
            continue
        frame = e.series()
        if frame is None or len(frame) < 1:
            continue
        cols = [c for c in frame.columns if _group_of(str(c)) and _numeric(frame[c])]
        if cols:
            segments.append((e, frame, cols))
    if not segments:
        return None
    columns: dict[str, list[str]] = {}
    for _, _, cols in segments:
        for c in cols:
            group = columns.setdefault(_group_of(c), [])
            if c not in group:
                group.append(c)
    order = [g for g, _ in _GROUPS if g in columns]
    durations = [float(f["t"].max() - f["t"].min()) for _, f, _ in segments]
    gap = max(0.02 * sum(durations), 0.05)

    # One line per column across all segments (NaN between them), gathered before drawing.
    lines: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    spans, timed_marks, centres, listing = [], [], [], []
    offset = 0.0
    for k, ((e, frame, cols), dur) in enumerate(zip(segments, durations, strict=True)):
        t = frame["t"].to_numpy(dtype=float)
        t0 = float(np.nanmin(t))
        x = t - t0 + offset
        for c in cols:
            xs_, ys_ = lines.setdefault(c, ([], []))
            xs_ += [x, np.array([np.nan])]
            ys_ += [frame[c].to_numpy(dtype=float), np.array([np.nan])]
        start = _timed_start(e, frame)
        if start is not None and t0 <= start <= t0 + dur:
            timed_marks.append(start - t0 + offset)
        if k % 2 == 1:
            spans.append((offset, max(dur, 1e-9)))
        centres.append(offset + dur / 2)
        listing.append({"n": k + 1, "label": e.label, "key": e.key, "seconds": fmt_value(dur),
                        "samples": str(len(frame))})
        offset += dur + gap
    named = len(segments) <= 6

    import seaborn as sns

    with style():
        fig, axes = figure(9.0, 1.8 * len(order) + 1.1, nrows=len(order), sharex=True, squeeze=False)
        axes = axes[:, 0]
        all_cols = [c for g in order for c in columns[g]]
        colors = dict(zip(all_cols, sns.color_palette("deep", len(all_cols)), strict=True))
        for ax, group in zip(axes, order, strict=True):
            if spans:
                ax.broken_barh(spans, (0, 1), transform=ax.get_xaxis_transform(), color="#eef1f5", zorder=0)
            if timed_marks:
                ax.vlines(timed_marks, 0, 1, transform=ax.get_xaxis_transform(), colors="#888",
                          linestyles=":", linewidth=0.8)
            for c in columns[group]:
                xs_, ys_ = lines[c]
                ax.plot(np.concatenate(xs_), np.concatenate(ys_), color=colors[c], linewidth=1.2, label=c)
            ax.set_ylabel(group, fontsize=8)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax_top = axes[0].secondary_xaxis("top")
        step = max(1, len(centres) // 30)
        ax_top.set_xticks(centres[::step], [short(e.label, 16) if named else str(k + 1)
                                              for k, (e, _, _) in enumerate(segments)][::step])
        ax_top.tick_params(labelsize=7, length=0, rotation=0 if named else 90)
        axes[-1].set_xlabel("seconds sampled (strategies back to back; dotted: timed calls begin)")
        axes[-1].set_xlim(-gap / 2, offset - gap / 2)
        fig.suptitle(short(title, 80), fontsize=11, fontweight="bold")
        uri, width = encode(fig)
    return Plot(
        kind="timeline",
        title="Memory and power timeline",
        alt=f"Sampler timeline for {title}",
        data_uri=uri,
        max_width=width,
        caption=f"{len(segments)} strategies with sampler series, in run order; shaded bands "
        "alternate between them" + ("" if named else ", numbered as listed below") + ".",
        listing=[] if named else listing,
        listing_columns=["#", "strategy", "seconds", "samples"],
    )


def _timed_start(e: Entry, frame) -> float | None:
    """When the timed calls began, on the series' clock: the first timed bound, else the
    first sample with an ``iteration`` index."""
    bounds = ((e.record.get("timing") or {}).get("bounds")) or []
    if bounds and isinstance(bounds[0], list | tuple) and bounds[0]:
        return _float(bounds[0][0])
    if "iteration" in frame.columns:
        timed = frame.loc[frame["iteration"] >= 0, "t"]
        return float(timed.min()) if len(timed) else None
    return None


def _numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and series.notna().any()


# -- comparison -------------------------------------------------------------------------------
def comparison_plot(changes: Sequence[Any], title: str) -> Plot | None:
    """Per strategy, how many times faster the later run is than the reference, with a
    95% interval, coloured by the Mann-Whitney verdict. ``changes`` are
    :class:`reports.compare.Change` objects."""
    rows = [c for c in changes if finite(c.ratio)]
    if not rows:
        return None
    n = len(rows)
    with style():
        fig, ax = figure(7.5, max(2.2, 0.27 * n + 1.2))
        vals = []
        for y, c in enumerate(rows):
            color = {"faster": FASTER_COLOR, "slower": SLOWER_COLOR}.get(c.verdict, NEUTRAL_COLOR)
            if finite(c.ci_low) and finite(c.ci_high) and c.ci_low > 0:
                ax.plot([c.ci_low, c.ci_high], [y, y], color=color, linewidth=2.2, solid_capstyle="round")
                vals += [c.ci_low, c.ci_high]
            ax.scatter([c.ratio], [y], color=color, s=30, zorder=3)
            vals.append(c.ratio)
        ax.axvline(1.0, color="#333", linewidth=0.9, linestyle="--")
        _log_axis(ax, vals + [1.0])
        ax.set_yticks(range(n), [short(c.strategy, 36) for c in rows])
        ax.invert_yaxis()
        ax.set_xlabel("latency ratio reference / this run (\u00d7, log); >1: this run is faster")
        ax.set_title(short(title, 80))
        uri, width = encode(fig)
    return Plot(
        kind="compare",
        title="Change per strategy",
        alt=f"Latency change per strategy: {title}",
        data_uri=uri,
        max_width=width,
        caption="Green: faster, red: slower (the run-against-run interval, corrected by each run's "
        "machine-speed probe, excludes no change); grey: equivalent (within +-5%) or inconclusive.",
    )


__all__ = [
    "Plot",
    "comparison_plot",
    "fmt_value",
    "pareto_plot",
    "pareto_points",
    "speed_plot",
    "step_plot",
    "timeline_plot",
]
