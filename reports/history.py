"""The history pages: every series' trend with its change points, as self-contained HTML.

:func:`write_pages` writes ``index.html`` (small multiples: one small trend per series, its
change points marked and a one-line summary of where it stands) and one page per series
under ``series/`` (the full trend with error bars, the change points with their commit range
and size, and every point). Plots are embedded PNG data URIs and the CSS is inline, as in the
run report, so the folder opens offline anywhere; nothing is fetched. The changes are read by
attribute (``series, index, commit_before, commit_after, before, after, ratio, ratio_low,
ratio_high, direction``, as :class:`bench.history.changepoints.Change` has them). Nothing
here imports torch.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import __version__
from reports.plots.style import Plot, fmt_value
from reports.plots.trend import trend_plot

TEMPLATES = Path(__file__).parent / "templates"
SHORT = 7


def slug(series: str) -> str:
    """A file name for ``series``: its readable characters and a short hash (unique)."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", series).strip("-.")[:80] or "series"
    return f"{text}-{hashlib.sha1(series.encode('utf-8')).hexdigest()[:8]}"


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _ratio_text(ratio: float, low: float, high: float) -> str:
    pct = f"{ratio - 1:+.1%}" if math.isfinite(ratio) else "-"
    if math.isfinite(low) and math.isfinite(high):
        return f"{pct} (x{ratio:.3f}, 95% {low:.3f} to {high:.3f})"
    return f"{pct} (x{ratio:.3f})" if math.isfinite(ratio) else pct


@dataclass
class SeriesView:
    """What the pages show of one series."""

    key: str
    slug: str
    parts: dict[str, str]
    unit: str
    higher_is_better: bool
    points: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    latest: str
    status: str
    plot: Plot | None = None
    small: Plot | None = None
    first_commit: dict[str, str] = field(default_factory=dict)
    last_commit: dict[str, str] = field(default_factory=dict)


class _Commits:
    """Commit hashes as links (with ``commit_url``) or as short text."""

    def __init__(self, commit_url: str | None):
        self.url = commit_url

    def __call__(self, commit: Any) -> dict[str, str]:
        text = str(commit)
        href = self.url.format(commit=text) if self.url and text else ""
        return {"full": text, "short": text[:SHORT], "href": href}


def _series_view(key: str, frame: Any, changes: Sequence[Any], commits: _Commits) -> SeriesView:
    first = frame.iloc[0]
    values = [_num(v) for v in frame["value"]]
    lows = [_num(v) for v in frame["low"]] if "low" in frame else [math.nan] * len(values)
    highs = [_num(v) for v in frame["high"]] if "high" in frame else [math.nan] * len(values)
    starts = {int(c.index): c for c in changes}
    segment = 0
    points = []
    for i, (_, row) in enumerate(frame.iterrows()):
        if i in starts:
            segment += 1
        points.append({
            "n": i + 1, "commit": commits(row["commit"]), "date": _date(row.get("commit_date")),
            "value": fmt_value(values[i]), "low": fmt_value(lows[i]), "high": fmt_value(highs[i]),
            "v": values[i], "run": str(row.get("run", "")), "segment": segment + 1,
            "change": starts[i].direction if i in starts else "",
        })
    rows = [{
        "index": int(c.index), "before": commits(c.commit_before), "after": commits(c.commit_after),
        "from": fmt_value(_num(c.before)), "to": fmt_value(_num(c.after)),
        "size": _ratio_text(_num(c.ratio), _num(c.ratio_low), _num(c.ratio_high)),
        "ratio": _num(c.ratio), "direction": str(c.direction),
    } for c in sorted(changes, key=lambda c: int(c.index))]
    unit = str(first.get("unit", "") or "")
    latest = f"latest {fmt_value(values[-1])} {unit}".rstrip()
    if rows:
        last = rows[-1]
        ago = len(values) - last["index"]
        latest += (f"; last change {last['size'].split(' ')[0]} ({last['direction']}) at "
                   f"{last['after']['short']}, {ago} point{'' if ago == 1 else 's'} ago")
        status = last["direction"]
    else:
        latest += "; no change point"
        status = "steady"
    parts = {k: str(first.get(k, "")) for k in ("model", "stack", "machine", "settings", "metric")}
    view = SeriesView(key=key, slug=slug(key), parts=parts, unit=unit,
                      higher_is_better=bool(first.get("higher_is_better", True)), points=points,
                      changes=rows, latest=latest, status=status,
                      first_commit=points[0]["commit"], last_commit=points[-1]["commit"])
    marks = [(r["index"], r["direction"]) for r in rows]
    labels = [p["commit"]["short"] for p in points]
    title = f"{parts['model']} {parts['stack']}: {parts['metric']}".strip()
    ylabel = f"{parts['metric']} ({unit})" if unit else parts["metric"]
    view.plot = trend_plot(values, lows, highs, marks, labels, title=title, ylabel=ylabel)
    view.small = trend_plot(values, lows, highs, marks, labels, title=title, small=True)
    return view


def _date(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    text = str(v)
    return "-" if text in ("NaT", "nan", "None") else text[:19]


def series_views(points: Any, changes: Sequence[Any], commit_url: str | None = None) -> list[SeriesView]:
    """One :class:`SeriesView` per series of ``points``, in the frame's order."""
    commits = _Commits(commit_url)
    by_series: dict[str, list[Any]] = {}
    for c in changes:
        by_series.setdefault(str(c.series), []).append(c)
    return [_series_view(str(key), frame.reset_index(drop=True), by_series.get(str(key), []),
                         commits)
            for key, frame in points.groupby("series", sort=False)]


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def _write(path: Path, html: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)


def write_pages(points: Any, changes: Sequence[Any], out_dir: Path, *,
                title: str = "accelbench history", commit_url: str | None = None) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/series/<slug>.html`` per series; returns
    the index's path.

    ``points`` is a points frame (``HistoryStore.points()``: one row per point, each series
    in commit order); ``changes`` its change points (:func:`bench.history.changepoints.changes`);
    ``commit_url`` a pattern such as ``"https://github.com/o/r/commit/{commit}"`` that turns
    commit hashes into links (else they are shown as short hashes).
    """
    out = Path(out_dir)
    views = series_views(points, changes, commit_url)
    env = _environment()
    common = {
        "title": title, "version": __version__,
        "generated": datetime.now().astimezone().isoformat(timespec="seconds"),
        "css": (TEMPLATES / "report.css").read_text(encoding="utf-8")
        + (TEMPLATES / "history.css").read_text(encoding="utf-8"),
    }
    page = env.get_template("history_series.html.j2")
    for v in views:
        _write(out / "series" / f"{v.slug}.html", page.render(s=v, **common))
    index = out / "index.html"
    n_changes = sum(len(v.changes) for v in views)
    _write(index, env.get_template("history_index.html.j2").render(
        views=views, n_points=len(points), n_changes=n_changes, **common))
    return index


__all__ = ["SeriesView", "series_views", "slug", "write_pages"]
