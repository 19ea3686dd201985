"""The speed figures: speedup over the baseline with its 95% interval beside every timed
call's latency, and the change per strategy between two runs. Intervals are coloured by the
verdict (faster, slower, neither). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from reports.data import Entry, finite, speedup_verdicts
from reports.plots.style import (
    FASTER_COLOR,
    FRONT_COLOR,
    NEUTRAL_COLOR,
    SLOWER_COLOR,
    VERDICT_COLORS,
    Plot,
    as_float,
    figure,
    finish,
    log_axis,
    short,
    style,
)

SPEED_CAPTION = (
    "Speedup is the baseline's median latency over the strategy's, with a bootstrap 95% "
    "interval; colour marks a two-sided Mann-Whitney U test on the raw latencies "
    "(p < 0.05). Right: every timed call, per image, with the median as a bar."
)
COMPARE_CAPTION = (
    "Green: faster, red: slower (the run-against-run interval, corrected by each run's "
    "machine-speed probe, excludes no change); grey: equivalent (within +-5%) or inconclusive."
)


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
    words = speedup_verdicts(rows)
    for y, e in enumerate(rows):
        sp = e.speedup
        r, lo, hi = as_float(sp.get("ratio")), as_float(sp.get("ci_low")), as_float(sp.get("ci_high"))
        if not finite(r) or r <= 0:
            continue
        color = VERDICT_COLORS.get(words.get(id(e), ""), NEUTRAL_COLOR)
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
        log_axis(ax_s, pts_x + seg_lo + seg_hi + [1.0])
        ax_s.set_xlabel("speedup vs baseline (\u00d7, log)\n> 1 is faster")
        ax_s.set_title("speedup, 95% interval")
        ax_s.set_yticks(range(n), [short(e.label, 36) for e in rows])
        ax_s.set_ylim(n - 0.5, -0.5)

        ax_l.scatter(all_ms, np.concatenate(lat_y), s=9, alpha=0.55, color=FRONT_COLOR, edgecolor="none")
        ax_l.vlines(med_x, np.arange(n) - 0.32, np.arange(n) + 0.32, colors="#0b2e4f", linewidth=2)
        log_axis(ax_l, all_ms.tolist())
        ax_l.set_xlabel("latency per image (ms, log)\nevery timed call; bar: median")
        ax_l.set_title("latency distribution")
        fig.legend(handles=[
            Line2D([], [], color=FASTER_COLOR, lw=2.2, label="faster"),
            Line2D([], [], color=SLOWER_COLOR, lw=2.2, label="slower"),
            Line2D([], [], color=NEUTRAL_COLOR, lw=2.2, label="equivalent or inconclusive"),
        ], fontsize=7.5, loc="outside lower center", ncol=3, frameon=False)
        return finish(fig, kind="speed", title="Speedup and latency distribution", caption=SPEED_CAPTION,
                      alt=f"Speedup with 95% intervals and per-call latency for each strategy of {model}")


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
            color = VERDICT_COLORS.get(c.verdict, NEUTRAL_COLOR)
            if finite(c.ci_low) and finite(c.ci_high) and c.ci_low > 0:
                ax.plot([c.ci_low, c.ci_high], [y, y], color=color, linewidth=2.2, solid_capstyle="round")
                vals += [c.ci_low, c.ci_high]
            ax.scatter([c.ratio], [y], color=color, s=30, zorder=3)
            vals.append(c.ratio)
        ax.axvline(1.0, color="#333", linewidth=0.9, linestyle="--")
        log_axis(ax, vals + [1.0])
        ax.set_yticks(range(n), [short(c.strategy, 36) for c in rows])
        ax.invert_yaxis()
        ax.set_xlabel("latency ratio reference / this run (\u00d7, log); >1: this run is faster")
        ax.set_title(short(title, 80))
        return finish(fig, kind="compare", title="Change per strategy", caption=COMPARE_CAPTION,
                      alt=f"Latency change per strategy: {title}")


__all__ = ["comparison_plot", "speed_plot"]
