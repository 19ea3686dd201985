"""The history figures: one series' points in commit order, with their intervals, the mean
of each segment and its change points marked (red when the change is worse, green when
better). Small for the overview's grid, full size for a series' page. Nothing here imports
torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reports.plots.style import (
    FASTER_COLOR,
    FRONT_COLOR,
    NEUTRAL_COLOR,
    SLOWER_COLOR,
    Plot,
    figure,
    finish,
    style,
)

TREND_CAPTION = (
    "Each point is one commit's measurement with its 95% interval, in commit order. Grey "
    "lines: the mean of each segment; dashed verticals: change points (red worse, green "
    "better), drawn between the last commit before and the first after."
)


def change_color(direction: str) -> str:
    """The colour of a change point by its direction."""
    return {"worse": SLOWER_COLOR, "better": FASTER_COLOR}.get(direction, NEUTRAL_COLOR)


def trend_plot(values: Sequence[float], lows: Sequence[float], highs: Sequence[float],
               changes: Sequence[tuple[int, str]], labels: Sequence[str], *, title: str,
               ylabel: str = "", small: bool = False) -> Plot:
    """One series as a figure. ``changes`` holds ``(index, direction)`` per change point
    (``index``: the first point after it); ``labels`` names each point on the x axis (short
    commit hashes; a few are shown)."""
    y = np.asarray(values, dtype=float)
    lo = np.asarray(lows, dtype=float)
    hi = np.asarray(highs, dtype=float)
    x = np.arange(len(y))
    cuts = [0, *sorted(i for i, _ in changes if 0 < i < len(y)), len(y)]
    width, height = (3.4, 1.7) if small else (9.0, 3.6)
    with style():
        fig, ax = figure(width, height)
        has = np.isfinite(lo) & np.isfinite(hi)
        if has.any():
            ax.errorbar(x[has], y[has], yerr=[y[has] - lo[has], hi[has] - y[has]], fmt="none",
                        ecolor=FRONT_COLOR, alpha=0.35, elinewidth=1.0 if small else 1.4)
        ax.plot(x, y, "-", color=FRONT_COLOR, alpha=0.35, lw=0.8)
        ax.plot(x, y, "o", color=FRONT_COLOR, ms=2.2 if small else 4.0)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            if np.isfinite(y[a:b]).any():
                ax.hlines(float(np.nanmean(y[a:b])), a - 0.4, b - 0.6, color="#6b7280", lw=1.6)
        for i, direction in changes:
            ax.axvline(i - 0.5, color=change_color(direction), ls="--", lw=1.6 if small else 2.0)
        ax.set_xlim(-0.8, max(len(y) - 0.2, 0.8))
        if small:
            ax.set_xticks([])
            ax.tick_params(labelsize=7)
        else:
            step = max(1, int(np.ceil(len(y) / 12)))
            ticks = list(range(0, len(y), step))
            ax.set_xticks(ticks, [labels[t] for t in ticks], rotation=45, ha="right",
                          fontsize=7, family="DejaVu Sans Mono")
            ax.set_xlabel("commit")
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")
        alt = (f"{title}: {len(y)} points, {len(changes)} change point"
               f"{'' if len(changes) == 1 else 's'}")
        plot = finish(fig, "trend-small" if small else "trend", title, alt,
                      caption="" if small else TREND_CAPTION)
    return plot


__all__ = ["TREND_CAPTION", "change_color", "trend_plot"]
