"""Gate inputs: every format a measurement comes in, read into one :class:`Entry`.

Run directories and ``results.jsonl`` are read through the typed record
(:class:`bench.core.record.Record`); pytest-benchmark JSON and the gate's own baseline files
have readers of their own. This module imports no torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.core import compare, results, stats
from bench.core.errors import GateError
from bench.core.formats import number, sanitize
from bench.core.record import REFERENCE, Record

BASELINE_SCHEMA = "accelbench.gate-baseline/1"
#: The strategy spec every run measures first and compares the others with.
REFERENCE_STRATEGY = REFERENCE


@dataclass
class Entry:
    """One measured configuration, read from any input format.

    Attributes:
        key: what entries are matched by across the two sides.
        name: display name.
        model: model name, where known.
        strategy: strategy stack spec, where known.
        settings: batch size, device, steps... as recorded.
        status: ``ok``, ``failed`` or ``unsupported``.
        error: why it is not ok.
        latencies_s: raw per-call latencies (seconds), where the input kept them.
        latency_ms: summary of the latencies in ms (``median``, ``ci_low``, ``ci_high``,
            ``n`` and ``ci_method``).
        speedup: speedup over the run's own reference (``ratio``, ``ci_low``, ``ci_high``,
            ``p_value``); None for the reference itself or where there is none.
        quality: metric -> value.
        quality_meta: metric -> {"higher_is_better": bool, "unit": str, ...}.
        fingerprint: hash of the reference model's weights (quality is only comparable
            between equal fingerprints), where recorded.
        source: the file it was read from.
    """

    key: str
    name: str
    model: str | None = None
    strategy: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    latencies_s: list[float] | None = None
    latency_ms: dict[str, Any] | None = None
    speedup: dict[str, Any] | None = None
    quality: dict[str, float] = field(default_factory=dict)
    quality_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprint: str | None = None
    source: str = ""
    #: Interleaved measurements: the round of each latency, and the job's id; two entries
    #: of one job can then be compared round by round (a paired test).
    rounds: list[int] | None = None
    run_id: str | None = None
    #: The run's machine-speed probe samples (seconds): separate runs are compared through it.
    probe_s: list[float] | None = None
    #: The noise floor of each distribution metric recorded with this entry (a run's
    #: reference carries it): what ``fid<=floor`` rules are resolved against.
    noise_floor: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return sanitize(asdict(self))

    def samples(self) -> compare.Samples:
        """What :mod:`bench.core.compare` needs of this entry."""
        lat = self.latency_ms or {}
        return compare.Samples(
            latencies_s=self.latencies_s, batch_size=int(self.settings.get("batch_size") or 1),
            rounds=self.rounds, run_id=self.run_id, median_ms=lat.get("median"),
            ci_low_ms=lat.get("ci_low"), ci_high_ms=lat.get("ci_high"), probe_s=self.probe_s)

    @classmethod
    def from_latencies(cls, key: str, latencies_s: Sequence[float], **kwargs: Any) -> Entry:
        """An entry from raw latencies alone (seconds)."""
        lat = [float(t) for t in latencies_s]
        return cls(key=key, name=kwargs.pop("name", key), latencies_s=lat,
                   latency_ms=_summary_ms(lat), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["quality"] = {k: _num(v) for k, v in (kwargs.get("quality") or {}).items()}
        return cls(**kwargs)


#: Entries of both sides are matched on this key (the report's comparison uses it too).
entry_key = compare.match_key


def _num(value: Any) -> float:
    """A float from a record value; NaN where there is none."""
    parsed = number(value)
    return math.nan if parsed is None else parsed


def _summary_ms(latencies_s: Sequence[float]) -> dict[str, Any]:
    s = stats.summarize([t * 1000 for t in latencies_s])
    return {"median": s.median, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n,
            "iqr": s.iqr, "ci_method": "order-statistics"}


def _notch_ms(median_s: float, iqr_s: float, n: int) -> dict[str, Any]:
    """95% interval of the median from quartiles alone (McGill, Tukey and Larsen's notch:
    median +- 1.57 IQR / sqrt(n)), for inputs that did not keep their raw samples."""
    half = 1.57 * iqr_s / math.sqrt(max(n, 1))
    return {"median": median_s * 1000, "ci_low": (median_s - half) * 1000,
            "ci_high": (median_s + half) * 1000, "n": n, "iqr": iqr_s * 1000,
            "ci_method": "notch (no raw samples)"}


def _speedup_from(reference: Entry, entry: Entry) -> dict[str, Any] | None:
    """Speedup of ``entry`` over ``reference`` measured in the same input."""
    sp = compare.speedup(reference.samples(), entry.samples())
    if sp is None:
        return None
    out = sp.as_dict()
    if sp.method == compare.INTERVALS:
        out["p_value"] = None
    return out
def _fill_speedups(entries: list[Entry]) -> None:
    """Give entries without a recorded speedup one over the same input's reference stack
    of the same model, batch size and device."""
    refs = {
        (e.model, e.settings.get("batch_size"), e.settings.get("device")): e
        for e in entries
        if e.strategy == REFERENCE_STRATEGY and e.status == "ok"
    }
    for e in entries:
        if e.speedup is not None or e.strategy in (None, REFERENCE_STRATEGY) or e.status != "ok":
            continue
        ref = refs.get((e.model, e.settings.get("batch_size"), e.settings.get("device")))
        if ref is not None:
            e.speedup = _speedup_from(ref, e)


# -- readers -----------------------------------------------------------------------------
def read_run(path: str | os.PathLike) -> list[Entry]:
    """Entries of a run directory or ``results.jsonl`` (accelbench records)."""

    return entries_from_records(results.iter_records(path), str(results.results_path(path)))


def entries_from_records(records: Iterable[dict[str, Any] | Record], source: str = "") -> list[Entry]:
    """Entries of accelbench records (one per record key, the last one winning)."""
    entries = []
    for data in records:
        rec = data if isinstance(data, Record) else Record.from_dict(data)
        calls = rec.calls
        summary = None
        if calls.latencies_s:
            summary = _summary_ms(calls.latencies_s)
        elif rec.latency_ms is not None:
            summary = {**asdict(rec.latency_ms), "ci_method": "recorded"}
        speed = rec.speedup
        settings = dict(rec.settings)
        entries.append(
            Entry(
                key=entry_key(rec.model_name, rec.strategy, settings, str(rec.strategy)),
                name=str(rec.strategy),
                model=rec.model_name,
                strategy=rec.strategy,
                settings=settings,
                status=rec.status,
                error=rec.error,
                latencies_s=calls.latencies_s or None,
                latency_ms=summary,
                speedup=speed.as_dict() if speed is not None else None,
                quality=dict(rec.scores.values),
                quality_meta=dict(rec.scores.meta),
                noise_floor=dict(rec.scores.noise_floor),
                fingerprint=rec.fingerprint,
                source=source,
                rounds=calls.rounds,
                run_id=rec.run_id,
                probe_s=rec.probe_latencies_s,
            )
        )
    _fill_speedups(entries)
    return _last_per_key(entries)


def read_pytest_benchmark(data: dict[str, Any], source: str = "") -> list[Entry]:
    """Entries of a pytest-benchmark JSON document (raw ``stats.data`` used where saved)."""
    entries = []
    for bench in data.get("benchmarks") or []:
        st = bench.get("stats") or {}
        info = bench.get("extra_info") or {}
        settings = dict(info.get("settings") or {})
        raw = st.get("data") or None
        if raw:
            summary = _summary_ms(raw)
        elif st.get("median") is not None:
            summary = _notch_ms(st["median"], st.get("iqr") or 0.0, int(st.get("rounds") or 1))
        else:
            summary = None
        fullname = bench.get("fullname") or bench.get("name") or "?"
        model, strategy = info.get("model"), info.get("strategy")
        entries.append(
            Entry(
                key=entry_key(model, strategy, settings, fullname),
                name=bench.get("name") or fullname,
                model=model,
                strategy=strategy,
                settings=settings,
                latencies_s=list(raw) if raw else None,
                latency_ms=summary,
                quality={k: _num(v) for k, v in (info.get("quality") or {}).items()},
                quality_meta=dict(info.get("quality_meta") or {}),
                fingerprint=info.get("base_fingerprint"),
                source=source,
            )
        )
    _fill_speedups(entries)
    return _last_per_key(entries)


def read_baseline_file(data: dict[str, Any], source: str = "") -> list[Entry]:
    """Entries of a gate baseline file."""
    entries = [Entry.from_dict({**e, "source": source}) for e in data.get("entries") or []]
    for e in entries:
        if e.latencies_s and not e.latency_ms:
            e.latency_ms = _summary_ms(e.latencies_s)
    return entries


def _last_per_key(entries: list[Entry]) -> list[Entry]:
    """One entry per key: the last one (results files are appended to, newest last)."""
    out: dict[str, Entry] = {}
    for e in entries:
        out.pop(e.key, None)
        out[e.key] = e
    return list(out.values())


def read_entries(path: str | os.PathLike) -> list[Entry]:
    """Entries of any supported input; :class:`GateError` for anything else."""
    p = Path(path)
    if not p.exists():
        raise GateError(f"{p}: no such file or directory")
    if p.is_dir():
        if not (p / "results.jsonl").exists():
            raise GateError(f"{p} is a directory without results.jsonl: not a run directory")
        return _nonempty(read_run(p), p)
    if p.suffix == ".jsonl":
        return _nonempty(read_run(p), p)
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if _is_records(text):  # a results file under another name
            return _nonempty(read_run(p), p)
        raise GateError(f"{p}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GateError(f"{p}: expected a JSON object")
    if data.get("schema") == BASELINE_SCHEMA:
        return _nonempty(read_baseline_file(data, str(p)), p)
    if "benchmarks" in data and ("machine_info" in data or "version" in data):
        return _nonempty(read_pytest_benchmark(data, str(p)), p)
    if str(data.get("schema", "")).startswith("accelbench.record/"):
        return _nonempty(read_run(p), p)
    raise GateError(
        f"{p}: not a run directory, results.jsonl, pytest-benchmark JSON or gate baseline file"
    )


def _is_records(text: str) -> bool:
    try:
        return str(json.loads(text.splitlines()[0]).get("schema", "")).startswith("accelbench.record/")
    except (json.JSONDecodeError, AttributeError):
        return False


def _nonempty(entries: list[Entry], path: Path) -> list[Entry]:
    if not entries:
        raise GateError(f"{path}: no measurements in it")
    return entries


def read_many(paths: Iterable[str | os.PathLike]) -> list[Entry]:
    """Entries of several inputs together (a later input's entry wins on a shared key)."""
    return _last_per_key([e for p in paths for e in read_entries(p)])


def save_baseline(entries: Sequence[Entry], path: str | os.PathLike, note: str | None = None) -> Path:
    """Write ``entries`` as a gate baseline file (the compact form to commit)."""

    doc = {
        "schema": BASELINE_SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": note,
        "entries": [{k: v for k, v in e.as_dict().items() if k != "source"} for e in entries],
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return out




__all__ = ["BASELINE_SCHEMA", "REFERENCE_STRATEGY", "Entry", "entries_from_records", "entry_key",
           "read_baseline_file", "read_entries", "read_many", "read_pytest_benchmark", "read_run",
           "save_baseline"]
