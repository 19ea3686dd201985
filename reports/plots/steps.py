"""The per-step figure: the median latency of each denoising step, as lines for a few
strategies and as a heatmap for many. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reports.data import Entry
from reports.plots.style import Plot, figure, finish, short, style

#: Per-step plots switch from lines to a heatmap beyond this many strategies.
MAX_STEP_LINES = 12
STEPS_CAPTION = (
    "The median over timed calls of each step's duration, from the pipeline's step callback "
    "(the first step includes any work done before the denoising loop)."
)


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
        return finish(fig, kind="steps", title="Per-step latency", caption=STEPS_CAPTION,
                      alt=f"Per-step latency ({kind}) for {title}")


__all__ = ["MAX_STEP_LINES", "step_plot"]
