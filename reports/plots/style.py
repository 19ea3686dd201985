"""What every figure of the report shares: colours, the seaborn style, the Agg figure, PNG
encoding and the axis and text helpers.

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

from reports.data import finite

DPI = 144
#: CSS pixels per figure inch: every figure shows at the same text size.
PX_PER_INCH = 96
FRONT_COLOR = "#1f6fb4"
DOMINATED_COLOR = "#a3a9b0"
FASTER_COLOR = "#2a9d6f"
SLOWER_COLOR = "#d1495b"
NEUTRAL_COLOR = "#7d8590"
#: Interval colour of each speedup verdict; any other verdict is drawn neutral.
VERDICT_COLORS = {"faster": FASTER_COLOR, "slower": SLOWER_COLOR}
RUN_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h")


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
    import matplotlib as mpl  # lazy: plotting libraries load on first figure
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


def encode(fig) -> tuple[str, int]:
    """The figure as a PNG data URI and the width (CSS px) to show it at, at most."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return uri, int(fig.get_size_inches()[0] * PX_PER_INCH)


def finish(
    fig,
    kind: str,
    title: str,
    alt: str,
    caption: str = "",
    listing: list[dict[str, Any]] | None = None,
    listing_columns: list[str] | None = None,
) -> Plot:
    """``fig`` encoded (call it inside :func:`style`) as the :class:`Plot` the page shows."""
    uri, width = encode(fig)
    return Plot(kind=kind, title=title, alt=alt, data_uri=uri, max_width=width, caption=caption,
                listing=listing or [], listing_columns=listing_columns or [])


def short(text: str, limit: int = 34) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def as_float(v: Any) -> float | None:
    """``v`` as a float, None when it is None or not a number."""
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def log_axis(ax, values: Sequence[float], axis: str = "x") -> None:
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


__all__ = [
    "DOMINATED_COLOR",
    "FASTER_COLOR",
    "FRONT_COLOR",
    "NEUTRAL_COLOR",
    "SLOWER_COLOR",
    "Plot",
    "as_float",
    "encode",
    "figure",
    "finish",
    "fmt_value",
    "log_axis",
    "short",
    "style",
]
