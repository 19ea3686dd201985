"""The plain-text summary table printed at the end of a run."""

from __future__ import annotations

import math
from typing import Any


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def summary_table(records: list[dict[str, Any]]) -> str:
    """Strategy, latency (median and 95% CI), speedup, PSNR, SSIM, adherence; one line each."""
    header = ("strategy", "ms/call", "95% CI", "img/s", "speedup", "PSNR", "SSIM", "adherence")
    rows = [header]
    for r in records:
        if r.get("status") != "ok":
            rows.append((r["strategy"], r.get("status", "?"), (r.get("error") or "")[:70], "", "", "", "", ""))
            continue
        lat = r["stats"]["latency_ms"]
        sp = r["stats"].get("speedup") or {}
        q = r.get("quality", {})
        sig = "" if sp.get("significant", True) else " (n.s.)"
        rows.append(
            (
                r["strategy"],
                _fmt(lat["median"], ".1f"),
                f"{_fmt(lat['ci_low'], '.1f')}-{_fmt(lat['ci_high'], '.1f')}",
                _fmt(r["stats"]["images_per_s"], ".1f"),
                (_fmt(sp.get("ratio"), ".2f") + "x" + sig) if sp else "-",
                _fmt(q.get("psnr"), ".1f"),
                _fmt(q.get("ssim"), ".3f"),
                _fmt(q.get("adherence"), ".2f"),
            )
        )
    rows = _with_token_columns(rows, records)
    header = rows[0]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _with_token_columns(rows: list[tuple], records: list[dict[str, Any]]) -> list[tuple]:
    """Add tokens/s and the draft acceptance rate after img/s when any record has them
    (autoregressive models); tables of other models are unchanged."""
    keys = [k for k in ("tokens_per_s", "acceptance_rate")
            if any(k in ((r.get("stats") or {}) if r.get("status") == "ok" else {}) for r in records)]
    if not keys:
        return rows
    titles = {"tokens_per_s": "tok/s", "acceptance_rate": "accept"}
    specs = {"tokens_per_s": ".0f", "acceptance_rate": ".2f"}
    out = [rows[0][:4] + tuple(titles[k] for k in keys) + rows[0][4:]]
    for row, r in zip(rows[1:], records, strict=True):
        stats = (r.get("stats") or {}) if r.get("status") == "ok" else None
        cells = tuple(_fmt(stats.get(k), specs[k]) if stats is not None else "" for k in keys)
        out.append(row[:4] + cells + row[4:])
    return out
