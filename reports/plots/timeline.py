"""The sampler timeline: memory, power, utilisation, temperature and clock series of every
strategy, back to back on one time axis, one panel per kind of reading. Nothing here
imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reports.data import Entry
from reports.plots.style import Plot, as_float, figure, finish, fmt_value, short, style

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
        return finish(
            fig,
            kind="timeline",
            title="Memory and power timeline",
            alt=f"Sampler timeline for {title}",
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
        return as_float(bounds[0][0])
    if "iteration" in frame.columns:
        timed = frame.loc[frame["iteration"] >= 0, "t"]
        return float(timed.min()) if len(timed) else None
    return None


def _numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and series.notna().any()


__all__ = ["timeline_plot"]
