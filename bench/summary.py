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
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
