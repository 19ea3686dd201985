"""The Pareto figures: cost per image (latency or energy, log axis) against one quality
metric, the frontier drawn as a staircase and labelled, the noise floor shaded.

Directions come from the metric's declaration (quality) and cost (lower is better); the
frontier itself is :func:`reports.pareto.pareto_front_2d`. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.data import Entry, MetricMeta, finite
from reports.pareto import pareto_front_2d
from reports.plots.style import (
    DOMINATED_COLOR,
    FASTER_COLOR,
    FRONT_COLOR,
    RUN_MARKERS,
    Plot,
    as_float,
    figure,
    finish,
    fmt_value,
    log_axis,
    short,
    style,
)

#: Frontier points are labelled by name up to this many, by number beyond.
MAX_NAMED_LABELS = 10
#: Label offsets tried in turn (points from the point; text anchored left or right).
_LABEL_SPOTS = ((6, 5, "left"), (6, -14, "left"), (-6, 5, "right"), (-6, -14, "right"),
                (6, 16, "left"), (-6, 16, "right"), (6, -25, "left"), (-6, -25, "right"))


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
    what = "latency" if x_kind == "latency" else "energy"
    floor = _noise_floor(points, metric.name)

    finite_y = [y for y in ys if math.isfinite(y)]
    lo, hi = (min(finite_y), max(finite_y)) if finite_y else (0.0, 1.0)
    span = (hi - lo) or (abs(hi) or 1.0)
    cap_hi, cap_lo = hi + 0.15 * span, lo - 0.15 * span
    draw_y = [y if math.isfinite(y) else (cap_hi if y > 0 else cap_lo) for y in ys]
    multi_run = len({p.entry.run.index for p in points}) > 1

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
        if floor is not None:
            mean, std = floor
            ax.axhspan(mean - 2 * std, mean + 2 * std, color=FASTER_COLOR, alpha=0.12, zorder=0, linewidth=0)
            ax.axhline(mean, color=FASTER_COLOR, alpha=0.6, linewidth=0.9, linestyle="--", zorder=0)
        log_axis(ax, xs)
        ax.set_xlabel(f"{x_label}: lower is better")
        ax.set_ylabel(f"{metric.label}: {'higher' if metric.higher_is_better else 'lower'} is better")
        ax.set_title(f"{short(model, 40)}: {metric.label} vs {what}")
        if caps:
            _infinite_ticks(ax, caps)
        named = len(front) <= MAX_NAMED_LABELS
        texts = [short(points[i].entry.label, 30) if named else str(k + 1) for k, i in enumerate(front)]
        _place_labels(ax, [xs[i] for i in front], [draw_y[i] for i in front], texts, list(zip(xs, draw_y, strict=True)))
        _better_arrow(ax, top=metric.higher_is_better)
        _pareto_legend(ax, points, multi_run, floor is not None)
        return finish(
            fig,
            kind=f"pareto-{x_kind}",
            title=f"{metric.label} vs {what} per image",
            alt=f"Pareto plot of {metric.label} against {what} per image for {model}",
            caption=_caption(entries, points, front, metric, what, floor is not None),
            listing=_listing(points, front, "ms" if x_kind == "latency" else "J"),
            listing_columns=["#", "strategy", f"{what}/image", metric.label, "speedup"],
        )


def _listing(points: Sequence[_Point], front: Sequence[int], x_unit: str) -> list[dict[str, Any]]:
    """The frontier's points, numbered as the figure labels them."""
    listing = []
    for k, i in enumerate(front):
        e = points[i].entry
        sp = e.speedup.get("ratio")
        listing.append({
            "n": k + 1,
            "label": e.label,
            "key": e.key,
            "x": fmt_value(points[i].x) + f" {x_unit}",
            "y": fmt_value(points[i].y),
            "speedup": (fmt_value(float(sp)) + "\u00d7") if finite(as_float(sp)) else "-",
        })
    return listing


def _caption(entries: Sequence[Entry], points: Sequence[_Point], front: Sequence[int],
             metric: MetricMeta, what: str, floor: bool) -> str:
    """What the figure shows, and what it leaves out."""
    n_dom = len(points) - len(front)
    missing = sum(1 for e in entries if e.ok) - len(points)
    not_measured = sum(1 for e in entries if not e.ok)
    return (
        f"{len(front)} of {len(points)} strategies on the frontier (blue, joined by the staircase of "
        f"the best {metric.label} reachable at each {what}); {n_dom} dominated (grey). "
        f"The star is the baseline."
        + (f" {missing} measured without a {what} or {metric.label} value are not drawn." if missing else "")
        + (f" {not_measured} not measured (see the table)." if not_measured else "")
        + (" The green band is what real images score (noise floor, mean \u00b1 2 standard deviations "
           "across draws of the same size): differences inside it mean nothing." if floor else "")
    )


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


__all__ = ["MAX_NAMED_LABELS", "pareto_plot", "pareto_points"]
