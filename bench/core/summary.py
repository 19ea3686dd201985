"""The plain-text summary printed at the end of a run."""

from __future__ import annotations

from typing import Any

from bench.core import stats
from bench.core.compare import FDR_NOTE, verdicts
from bench.core.formats import fmt
from bench.core.record import Latency, Record, Speedup


def _speedup(sp: Speedup | None, word: str | None) -> str:
    if sp is None:
        return "-"
    text = f"{fmt(sp.ratio, '.2f')}x [{fmt(sp.ci_low, '.2f')}-{fmt(sp.ci_high, '.2f')}]"
    return f"{text} {word}" if word else text


def run_verdicts(records: list[dict[str, Any]], margin: float | None = None) -> dict[str, str]:
    """The verdict of each stack's speedup over the reference, the run's comparisons taken
    together (false discovery rate controlled: :func:`bench.core.compare.verdicts`); ``margin``:
    the practical margin of ``equivalent`` (default +-5%)."""

    compared = [r for r in map(Record.from_dict, records)
                if r.ok and not r.is_reference and r.speedup is not None]
    words = verdicts([r.stats["speedup"] for r in compared],
                     margin=stats.MARGIN if margin is None else margin)
    return {r.strategy: w for r, w in zip(compared, words, strict=True) if w}


def verdict_note(records: list[dict[str, Any]], margin: float | None = None) -> str | None:
    """The line under a summary that says what its words mean and how many comparisons the
    false discovery rate was held over; None where nothing was compared."""

    n = len(run_verdicts(records, margin))
    if not n:
        return None
    levels = sorted({(sp.get("n"), sp.get("ci_level")) for r in map(Record.from_dict, records)
                     if (sp := (r.stats or {}).get("speedup") or {}).get("ci_level")
                     and abs(sp["ci_level"] - 0.95) > 0.001 and sp.get("n")})
    coverage = "; ".join(f"{level:.1%} at {k} rounds" for k, level in levels)
    note = FDR_NOTE.format(n=n, margin=stats.MARGIN if margin is None else margin)
    return note + (f". Paired intervals' actual coverage: {coverage}" if coverage else "")


def summary_table(records: list[dict[str, Any]], margin: float | None = None) -> str:
    """One line per stack: latency (median and 95% CI), images/s, speedup over the reference
    with its 95% interval and its verdict (faster, slower, equivalent, inconclusive), and
    quality."""
    header = ("strategy", "ms/call", "95% CI", "img/s", "speedup [95% CI]", "PSNR", "SSIM",
              "adherence", "FID")
    rows = [header]
    words = run_verdicts(records, margin)
    for r in map(Record.from_dict, records):
        if not r.ok:
            rows.append((r.strategy, r.status, (r.error or "")[:90], "", "", "", "", "", ""))
            continue
        lat = r.latency_ms or Latency()
        q = r.quality or {}
        rows.append((
            r.strategy,
            fmt(lat.median, ".1f"),
            f"{fmt(lat.ci_low, '.1f')}-{fmt(lat.ci_high, '.1f')}",
            fmt(r.images_per_s, ".1f"),
            _speedup(r.speedup, words.get(r.strategy)) if not r.is_reference else "reference",
            fmt(q.get("psnr"), ".1f"),
            fmt(q.get("ssim"), ".3f"),
            fmt(q.get("adherence"), ".2f"),
            fmt(q.get("fid"), ".2f"),
        ))
    rows = _drop_empty(_with_model_columns(rows, records))
    measured = [row for row in rows if not _refused(row)]
    widths = [max(len(str(row[i])) for row in measured) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        if _refused(row):
            lines.append(f"{str(row[0]).ljust(widths[0])}  {row[1]}: {row[2]}")
            continue
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _refused(row: tuple) -> bool:
    return len(row) > 3 and row[1] in ("unsupported", "same", "failed") and not row[3]


def _drop_empty(rows: list[tuple]) -> list[tuple]:
    """Drop quality columns no record has (e.g. FID on a model without real images)."""
    keep = [i for i in range(len(rows[0]))
            if i < 5 or any(row[i] not in ("-", "") for row in rows[1:] if not _refused(row))]
    return [tuple(row[i] for i in keep) for row in rows]


#: Rate columns some models add after img/s: (stat, title, format).
RATE_COLUMNS = (
    ("tokens_per_s", "tok/s", ".0f"),  # token models
    ("forward_passes_per_image", "fwd/img", ".1f"),
    ("acceptance_rate", "accept", ".2f"),
    ("frames_per_s", "frames/s", ".1f"),  # video models
    ("s_per_video", "s/video", ".2f"),
)
#: Quality columns only video models have, added at the end: (metric, title, format).
VIDEO_QUALITY_COLUMNS = (
    ("temporal_psnr", "tPSNR", ".1f"),
    ("frame_adherence", "frame adh", ".2f"),
    ("motion_correct", "motion", ".2f"),
)


def _with_model_columns(rows: list[tuple], records: list[dict[str, Any]]) -> list[tuple]:
    """Add the rate columns (tokens/s, forward passes per image and the draft acceptance of
    token models; generated frames per second and seconds per video of video models) after
    img/s, and the video quality columns at the end, where any record has them; tables of
    other models are unchanged."""
    typed = [Record.from_dict(r) for r in records]
    rates = [c for c in RATE_COLUMNS if any(r.ok and r.stat(c[0]) is not None for r in typed)]
    extra = [c for c in VIDEO_QUALITY_COLUMNS
             if any(r.ok and (r.quality or {}).get(c[0]) is not None for r in typed)]
    if not rates and not extra:
        return rows
    out = [rows[0][:4] + tuple(c[1] for c in rates) + rows[0][4:] + tuple(c[1] for c in extra)]
    for row, r in zip(rows[1:], typed, strict=True):
        cells = tuple(fmt(r.stat(k), spec) if r.ok else "" for k, _, spec in rates)
        tail = tuple(fmt((r.quality or {}).get(k), spec) if r.ok else "" for k, _, spec in extra)
        out.append(row[:4] + cells + row[4:] + tail)
    return out


def slower_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per stack that is significantly slower than the baseline: why, where the run
    recorded the cause, else that it is slower."""
    out = []
    for r in records:
        for reason in r.get("slower_because") or []:
            out.append(f"{r['strategy']} is slower: {reason}")
    return out


def schedule_line(schedule: dict[str, Any]) -> str:
    """One line saying how the stacks were timed."""
    name = schedule.get("name", "?")
    if name == "interleaved":
        text = (f"interleaved: {schedule.get('rounds')} rounds of {schedule.get('block')} call(s) "
                "per stack, order reversed every round")
    else:
        text = f"{name}: each stack timed on its own, one after the other"
    reason = schedule.get("reason")
    return text + (f" ({reason})" if reason else "")


def tune_summary(tune: dict[str, Any]) -> str:
    """What a search found: the trials, the full measurement of the candidates, the answer."""
    trials = tune.get("trials") or []
    done = [t for t in trials if t["state"] == "complete"]
    slow = [t for t in trials if t["state"] == "pruned" and str(t.get("reason") or "").startswith("pruned")]
    lines = [f"{len(trials)} trials ({len(done)} measured, {len(slow)} pruned as too slow, "
             f"{sum(t['state'] == 'pruned' for t in trials) - len(slow)} rejected as incompatible, "
             f"{sum(t['state'] == 'fail' for t in trials)} failed) in {tune.get('seconds', 0) / 60:.1f} min"]
    if tune.get("measured"):
        lines.append(f"candidates measured {tune['measured']}")
    rows = [("candidate", "speedup [95% CI]", "quality", "meets", "training s")]
    for r in tune.get("candidates") or []:
        q = ", ".join(f"{k} {fmt(v, '.3g')}" for k, v in sorted(r["quality"].items()) if k in ("psnr", "adherence", "fid", "ssim"))
        sp = f"{fmt(r['speedup'], '.2f')}x [{fmt(r['ci_low'], '.2f')}-{fmt(r['ci_high'], '.2f')}]"
        sp += f" {r['verdict']}" if r.get("verdict") else ""
        rows.append((r["stack"], sp, q, "yes" if r["feasible"] else "no", fmt(r.get("training_s"), ".0f")))
    if len(rows) > 1:
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for k, row in enumerate(rows):
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
    best = tune.get("best")
    constraints = (tune.get("config") or {}).get("constraints") or []
    if best:
        lines.append(f"\nbest under {', '.join(constraints)}: {best['stack']}: "
                     f"{fmt(best['speedup'], '.2f')}x [{fmt(best['ci_low'], '.2f')}-{fmt(best['ci_high'], '.2f')}]"
                     + (f" {best['verdict']}" if best.get("verdict") else ""))
    elif constraints:
        lines.append(f"\nno candidate met {', '.join(constraints)} in the full measurement")
    else:
        lines.append("\nPareto front (objective and quality): "
                     + ", ".join(r["stack"] for r in tune.get("front") or []))
    return "\n".join(lines)


__all__ = ["run_verdicts", "schedule_line", "slower_lines", "summary_table", "tune_summary",
           "verdict_note"]
