"""What the report shows per model: the overview, its Pareto and speed figures, the joint
frontier, and per run the image grids, per-step latency and sampler timeline. Nothing here
imports torch.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reports import plots
from reports.data import Entry, MetricMeta, RunData, finite, metric_order, number
from reports.pareto import pareto_front_2d, pareto_mask
from reports.table import fmt

#: Image grids wider than this are scaled down before embedding (the file is linked).
MAX_GRID_WIDTH = 1600


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
    #: Frames of an animated grid (a video model's clips play in place); 1 for images.
    frames: int = 1


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
    """Everything the report shows of one model, built by :func:`build_model_section`."""

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
        """The section's figures, in page order."""
        out = [*self.pareto, *self.energy]
        if self.speed:
            out.append(self.speed)
        for r in self.runs:
            out += [p for p in (r.steps, r.timeline) if p]
        return out


def embed_png(path: Path, max_width: int = MAX_GRID_WIDTH) -> str:
    """A PNG file as a data URI, scaled down (PIL) when wider than ``max_width``; an animated
    PNG (a video's grid) stays animated, every frame scaled alike."""
    data = path.read_bytes()
    try:
        from PIL import Image, ImageSequence

        with Image.open(io.BytesIO(data)) as im:
            if im.width > max_width:
                size = (max_width, max(1, round(im.height * max_width / im.width)))
                frames = [f.convert("RGB").resize(size, Image.LANCZOS)
                          for f in ImageSequence.Iterator(im)]
                buf = io.BytesIO()
                if len(frames) > 1:
                    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:],
                                   duration=im.info.get("duration", 125), loop=0)
                else:
                    frames[0].save(buf, format="PNG", optimize=True)
                data = buf.getvalue()
    except ImportError:  # pragma: no cover - pillow ships with matplotlib
        pass
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_frames(path: Path) -> int:
    """How many frames a PNG file holds (1 for a still image, 0 when unreadable)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except (ImportError, OSError):
        return 0


def _common_metrics(entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> list[MetricMeta]:
    ok = [e for e in entries if e.ok]
    return [m for m in metrics if ok and all(m.name in e.quality for e in ok)]


def joint_frontier(entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> list[Entry]:
    """Entries on the frontier of latency per image and every metric all of them have."""
    ok = [e for e in entries if e.ok and finite(e.ms_per_image)]
    common = _common_metrics(ok, metrics)
    if not ok:
        return []
    points = [[e.ms_per_image] + [e.quality[m.name] for m in common] for e in ok]
    mask = pareto_mask(points, [False] + [m.higher_is_better for m in common])
    on = [e for e, keep in zip(ok, mask, strict=True) if keep]
    return sorted(on, key=lambda e: e.ms_per_image)


def metric_frontiers(entries: Sequence[Entry], metrics: Sequence[MetricMeta]) -> dict[str, list[str]]:
    """entry key -> labels of the metrics on whose latency frontier it lies."""
    out: dict[str, list[str]] = {}
    for m in metrics:
        pts = plots.pareto_points(entries, m, "latency")
        front = pareto_front_2d([p.x for p in pts], [p.y for p in pts], False, m.higher_is_better)
        for i in front:
            out.setdefault(pts[i].entry.key, []).append(m.label)
    return out


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
        grids.append(Grid(e.key, e.label, e.status, embed_png(path), "", e.is_baseline,
                          quality=quality, frames=max(png_frames(path), 1)))
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
    section.frontier_joint = joint_frontier(entries, metrics)
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


__all__ = ["Grid", "ModelSection", "RunSection", "build_model_section", "embed_png",
           "joint_frontier", "metric_frontiers"]
