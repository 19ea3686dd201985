"""The raw sampled series of one measured stack, saved beside the results as a compact
columnar file for the report's power and memory timelines.

Parquet (zstd) through pyarrow when it is installed, otherwise a compressed ``.npz``.
Timestamps and cumulative energy stay float64 (``perf_counter`` seconds need it); every other
column is float32, the ``iteration`` column int32. The file carries its own metadata: the
source, interval, clock, timed window and each column's unit, so a timeline can be drawn
from the file alone. This module imports no torch (``reports`` may use :func:`read`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.measure.samplers.base import SamplerResult
from bench.measure.samplers.timeseries import in_span, windows_of

META_KEY = "accelbench.series"
FORMAT = "accelbench.series/1"

_UNITS = (
    ("_mb", "MiB"),
    ("_w", "W"),
    ("_j", "J"),
    ("_c", "degC"),
    ("_mhz", "MHz"),
    ("_ms", "ms"),
    ("percent", "%"),
    ("util_gpu", "%"),
    ("util_mem", "%"),
    ("throttle", "bitmask of NVML clock-event reasons"),
)


def unit(column: str) -> str:
    """The unit of a series column, from its name."""
    if column == "t":
        return "s (time.perf_counter)"
    if column == "iteration":
        return "timed iteration index, -1 outside the timed loop"
    for suffix, name in _UNITS:
        if column.endswith(suffix):
            return name
    return ""


def _with_suffix(path: Path, suffix: str) -> Path:
    """``path`` with the format's suffix; a dot inside a strategy slug is not a suffix."""
    if path.suffix in (".parquet", ".npz"):
        return path.with_suffix(suffix)
    return path.with_name(path.name + suffix)


def _dtype(column: str) -> str:
    if column == "t" or column.endswith("energy_j"):
        return "float64"
    if column == "iteration":
        return "int32"
    return "float32"


def metadata(result: SamplerResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a reader needs besides the columns."""
    return {
        "format": FORMAT,
        "source": result.source,
        "interval_s": result.interval_s,
        "clock": "time.perf_counter",
        "window": result.summary.get("window"),
        "mode": result.summary.get("mode"),
        "units": {c: unit(c) for c in result.series},
        "missing": result.missing,
        **(extra or {}),
    }


def write(result: SamplerResult, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``result.series`` to ``path`` (``.parquet``; ``.npz`` without pyarrow).

    The format's suffix is added to (or replaces a format suffix of) ``path``; returns the
    path written.
    """
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(metadata(result, extra), default=str)
    columns = {c: np.asarray(v, dtype=_dtype(c)) for c, v in result.series.items()}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        target = _with_suffix(path, ".npz")
        np.savez_compressed(target, **columns, __meta__=np.asarray(meta))
        return target
    target = _with_suffix(path, ".parquet")
    table = pa.table({c: pa.array(v) for c, v in columns.items()})
    table = table.replace_schema_metadata({META_KEY: meta})
    pq.write_table(table, target, compression="zstd")
    return target


def restrict(result: SamplerResult, windows: list[tuple[float, float]]) -> SamplerResult:
    """``result`` with only the samples taken inside ``windows`` (one stack's own calls when
    several stacks were timed in alternation); the summary is kept as it is."""
    if not windows:
        return result
    spans = windows_of(windows)
    keep = [i for i, t in enumerate(result.series.get("t", [])) if in_span(t, spans)]
    series = {k: [v[i] for i in keep] for k, v in result.series.items()}
    return replace(result, series=series)


def read_frame(path: str | os.PathLike):
    """A series file as a pandas DataFrame with a ``t`` column, or None when the file is
    missing, unreadable or has no ``t`` (a report then says there is no series)."""
    import pandas as pd

    try:
        columns, _ = read(path)
    except Exception:  # noqa: BLE001 - any unreadable file degrades to "no series"
        return None
    columns = {k: v for k, v in columns.items() if getattr(v, "ndim", 1) == 1}
    try:
        frame = pd.DataFrame(columns)
    except ValueError:  # ragged columns
        return None
    return frame if "t" in frame.columns and not frame.empty else None


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Columns (numpy arrays) and metadata of a file written by :func:`write`."""
    import numpy as np

    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            meta = json.loads(str(data["__meta__"]))
            return {k: data[k] for k in data.files if k != "__meta__"}, meta
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY.encode())
    meta = json.loads(raw) if raw else {}
    return {c: table.column(c).to_numpy() for c in table.column_names}, meta


__all__ = ["FORMAT", "META_KEY", "metadata", "read", "read_frame", "restrict", "unit", "write"]
