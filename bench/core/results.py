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

from bench.core.formats import number, sanitize
from bench.core.record import SCHEMA, Latency, Record, Speedup

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
    """Append one record (a :meth:`bench.core.record.Record.to_dict`) as a single line, flushed
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


def read_records(path: str | os.PathLike) -> Iterator[Record]:
    """The records of a run directory or results file, typed (:class:`Record`)."""
    for data in iter_records(path):
        yield Record.from_dict(data)


#: Quality columns, in this order.
QUALITY_COLUMNS = ("psnr", "ssim", "adherence", "fid", "kid", "kid_std", "lpips", "clip_score")
#: Video models' quality (extra columns, absent elsewhere).
VIDEO_QUALITY_COLUMNS = ("temporal_psnr", "frame_adherence", "motion_correct")
#: Token models' figures (extra columns, absent elsewhere).
TOKEN_COLUMNS = ("tokens_per_s", "tokens_per_forward", "forward_passes_per_image",
                 "acceptance_rate", "token_acceptance")
#: Video models' figures (extra columns, absent elsewhere).
VIDEO_COLUMNS = ("frames_per_video", "frame_rate", "frames_per_s", "s_per_video")


def flatten(record: dict[str, Any] | Record) -> dict[str, Any]:
    """One DataFrame row from a record: the :data:`COLUMNS` first, then extras."""
    rec = record if isinstance(record, Record) else Record.from_dict(record)
    latency = rec.latency_ms or Latency()
    speed = rec.speedup or Speedup(None)
    cold = rec.cold_costs
    row: dict[str, Any] = {
        "model": rec.model_name,
        "strategy": rec.strategy,
        "status": rec.status,
        "schedule": (rec.schedule or {}).get("name"),
        "device": rec.settings.get("device"),
        "batch_size": rec.settings.get("batch_size"),
        "steps": rec.settings.get("steps"),
        "latency_ms_median": latency.median,
        "latency_ms_ci_low": latency.ci_low,
        "latency_ms_ci_high": latency.ci_high,
        "latency_ms_iqr": latency.iqr,
        "ms_per_image": rec.ms_per_image,
        "images_per_s": rec.images_per_s,
        "speedup": speed.ratio,
        "speedup_ci_low": speed.ci_low,
        "speedup_ci_high": speed.ci_high,
        "speedup_p_value": speed.p_value,
        "peak_mem_mb": rec.peak_memory_mb,
        "energy_j_per_image": rec.energy_j_per_image,
        "params": rec.params,
        "flops_per_step": rec.size("flops_per_step"),
        "flops_once": rec.size("flops_once"),
        "flops_per_image": rec.size("flops_per_image"),
        "first_call_s": cold.get("first_call_s"),
        "load_s": cold.get("load_s"),
        "apply_s": cold.get("apply_s"),
        "training_s": cold.get("training_s"),
        "break_even_images": cold.get("break_even_images"),
        "iterations": latency.n,
        "run_id": rec.run_id,
        "error": rec.error,
    }
    quality = rec.quality or {}
    for name in QUALITY_COLUMNS:
        row[name] = number(quality.get(name))
    for name in (*TOKEN_COLUMNS, *VIDEO_COLUMNS):
        if name in (rec.stats or {}):
            row[name] = rec.stat(name)
    for name in VIDEO_QUALITY_COLUMNS:
        if name in quality:
            row[name] = number(quality.get(name))
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
