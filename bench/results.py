"""Results: one JSON object per (model, strategy stack, settings), appended to JSON Lines.

The file is append-only; a record is written with one ``write`` and flushed to disk, so a
killed run loses at most the record being written and never corrupts earlier ones (a torn
last line is skipped on reading, with a warning). Raw samples are stored; statistics are
derived and stored too for convenience, but can always be recomputed.

``load(path)`` is the public way to read results: a DataFrame with one row per record.
This module imports no torch, so reports can be built without it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.formats import number, sanitize
from bench.record import SCHEMA

RESULTS_FILE = "results.jsonl"

#: Columns ``load`` always returns, in this order, before any others.
COLUMNS = [
    "model",
    "strategy",
    "status",
    "schedule",
    "device",
    "batch_size",
    "steps",
    "latency_ms_median",
    "latency_ms_ci_low",
    "latency_ms_ci_high",
    "latency_ms_iqr",
    "ms_per_image",
    "images_per_s",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "speedup_p_value",
    "peak_mem_mb",
    "energy_j_per_image",
    "params",
    "flops_per_step",
    "flops_once",
    "flops_per_image",
    "psnr",
    "ssim",
    "adherence",
    "fid",
    "kid",
    "kid_std",
    "lpips",
    "clip_score",
    "first_call_s",
    "load_s",
    "apply_s",
    "training_s",
    "break_even_images",
    "iterations",
    "run_id",
    "error",
]


def results_path(path: str | os.PathLike) -> Path:
    """The results file for a run directory or a results file path."""
    p = Path(path)
    return p / RESULTS_FILE if p.is_dir() else p


def append(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record (a :meth:`bench.record.Record.to_dict`) as a single line, flushed
    and fsynced."""
    record = {"schema": SCHEMA, **record}
    line = json.dumps(sanitize(record), separators=(",", ":"), default=str) + "\n"
    target = results_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records of a run directory or results file, skipping a torn or foreign line."""
    target = results_path(path)
    if not target.exists():
        raise FileNotFoundError(f"no results at {target}")
    with open(target, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                warnings.warn(f"{target}:{lineno}: skipping an incomplete record", stacklevel=2)
                continue
            schema = str(record.get("schema", ""))
            if not schema.startswith("accelbench.record/"):
                warnings.warn(f"{target}:{lineno}: not an accelbench record", stacklevel=2)
                continue
            yield record


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One DataFrame row from a record: the :data:`COLUMNS` first, then extras."""
    stats = record.get("stats") or {}
    latency = stats.get("latency_ms") or {}
    speed = stats.get("speedup") or {}
    settings = record.get("settings") or {}
    quality = record.get("quality") or {}
    memory = record.get("memory") or {}
    energy = record.get("energy") or {}
    cold = record.get("cold") or {}
    model = record.get("model") or {}
    size = record.get("model_size") or {}
    row: dict[str, Any] = {
        "model": model.get("name") if isinstance(model, dict) else model,
        "strategy": record.get("strategy"),
        "status": record.get("status", "ok"),
        "schedule": (record.get("schedule") or {}).get("name"),
        "device": settings.get("device"),
        "batch_size": settings.get("batch_size"),
        "steps": settings.get("steps"),
        "latency_ms_median": latency.get("median"),
        "latency_ms_ci_low": latency.get("ci_low"),
        "latency_ms_ci_high": latency.get("ci_high"),
        "latency_ms_iqr": latency.get("iqr"),
        "ms_per_image": stats.get("ms_per_image"),
        "images_per_s": stats.get("images_per_s"),
        "speedup": speed.get("ratio"),
        "speedup_ci_low": speed.get("ci_low"),
        "speedup_ci_high": speed.get("ci_high"),
        "speedup_p_value": speed.get("p_value"),
        "peak_mem_mb": memory.get("peak_mb"),
        "energy_j_per_image": energy.get("j_per_image"),
        "params": size.get("params", model.get("params") if isinstance(model, dict) else None),
        "flops_per_step": size.get("flops_per_step"),
        "flops_once": size.get("flops_once"),
        "flops_per_image": size.get("flops_per_image"),
        "first_call_s": cold.get("first_call_s"),
        "load_s": cold.get("load_s"),
        "apply_s": cold.get("apply_s"),
        "training_s": cold.get("training_s"),
        "break_even_images": cold.get("break_even_images"),
        "iterations": latency.get("n"),
        "run_id": record.get("run_id"),
        "error": record.get("error"),
    }
    for name in ("psnr", "ssim", "adherence", "fid", "kid", "kid_std", "lpips", "clip_score"):
        row[name] = number(quality.get(name))
    # Token models only (extra columns, absent elsewhere).
    for name in ("tokens_per_s", "tokens_per_forward", "forward_passes_per_image",
                 "acceptance_rate", "token_acceptance"):
        if name in stats:
            row[name] = number(stats[name])
    for name in ("latency_ms_median", "latency_ms_ci_low", "latency_ms_ci_high", "speedup"):
        row[name] = number(row[name])
    return row


def load(path: str | os.PathLike | Iterable[str | os.PathLike]):
    """Read results into a pandas DataFrame, one row per record.

    ``path`` is a run directory, a ``results.jsonl`` file, or several of either.
    """
    import pandas as pd

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    rows = [flatten(r) for p in paths for r in iter_records(p)]
    frame = pd.DataFrame(rows, columns=COLUMNS if not rows else None)
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    extras = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extras]
