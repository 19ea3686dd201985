"""The regression gate: compare a current set of measurements with a baseline and decide.

Inputs (either side) are any of:

* a run directory or ``results.jsonl`` written by ``accelbench run`` (:mod:`bench.engine`);
* a pytest-benchmark JSON file (``--benchmark-json``, or a saved run from
  ``--benchmark-save`` / ``--benchmark-autosave``); the accelbench pytest plugin puts model,
  strategy, quality and their directions in each benchmark's ``extra_info``;
* a gate baseline file (``accelbench.gate-baseline/1``, written by
  ``accelbench gate ... --save-baseline FILE``), the compact form meant to be committed.

Each input becomes a list of :class:`Entry`; entries of the two sides are matched by
:attr:`Entry.key` (model, strategy and batch size, or the pytest node id for benchmarks
that are not accelbench's), and checked against :class:`Rules`:

* **latency** (``mode="absolute"``): the current median against the baseline's. A slowdown
  counts only when it is larger than ``max_slowdown`` *and* its verdict is ``slower``
  (:mod:`bench.compare`): two arms of one interleaved job round by round (median per-round
  ratio, its order-statistic interval and the sign test), which cancels the machine's
  drift; two separate runs through their machine-speed probes (the machine's change divided
  out); raw samples without probes with Mann-Whitney U; else non-overlapping 95% intervals
  of the median. The false discovery rate is held at ``alpha`` over every latency check
  (Benjamini-Hochberg).
* **latency** (``mode="speedup"``): each strategy's speedup over its own run's reference
  (the ``baseline`` stack measured in the same job) against the baseline's speedup. The
  ratio cancels the machine's speed, so a committed baseline holds across runners; a drop
  counts only when larger than ``max_slowdown`` and the two speedup intervals do not overlap.
* **quality**: ``metric:-1`` (at most 1 unit worse than the baseline), ``metric:+10%``
  (at most 10% worse), ``metric:0.02`` (sign left to the metric's direction), and floors or
  ceilings on the current value alone: ``metric>=0.7``, ``metric<=40``. "Worse" follows each
  metric's declared ``higher_is_better`` (``quality_meta`` in the records), never a guess.
  Quality needs no significance test: with fixed seeds it is deterministic.
* **status**: a stack that was ``ok`` in the baseline and failed or became unsupported.

The verdict: exit 0 (pass), 1 (regression), 2 (the inputs or rules cannot be used). It is a
readable table (:func:`format_table`) and a JSON document (:meth:`Verdict.as_dict`).
This module imports no torch.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import compare, stats
from bench.formats import fmt, number, sanitize

BASELINE_SCHEMA = "accelbench.gate-baseline/1"
VERDICT_SCHEMA = "accelbench.gate-verdict/1"
#: Significance level of the latency tests unless configured.
DEFAULT_ALPHA = 0.05
#: Relative slowdown allowed unless configured.
DEFAULT_MAX_SLOWDOWN = 0.10
#: z of a two-sided 95% interval (used only when raw samples are missing).
_Z95 = 1.959963984540054
#: The strategy spec every run measures first and compares the others with.
REFERENCE_STRATEGY = "baseline"
#: Rounds two interleaved stacks must share for the paired test.
MIN_PAIRED_ROUNDS = compare.MIN_PAIRED_ROUNDS

EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


class GateError(ValueError):
    """Inputs or rules the gate cannot use (exit code 2); the message says why."""


# ---------------------------------------------------------------------------------------
# Entries: one measured configuration, whatever file it came from
# ---------------------------------------------------------------------------------------
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

    def as_dict(self) -> dict[str, Any]:
        return sanitize(asdict(self))

    def samples(self) -> compare.Samples:
        """What :mod:`bench.compare` needs of this entry."""
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
    from bench import results

    return entries_from_records(results.iter_records(path), str(results.results_path(path)))


def entries_from_records(records: Iterable[dict[str, Any]], source: str = "") -> list[Entry]:
    """Entries of accelbench records (one per record key, the last one winning)."""
    entries = []
    for rec in records:
        model = rec.get("model") or {}
        model_name = model.get("name") if isinstance(model, dict) else model
        settings = dict(rec.get("settings") or {})
        timing = rec.get("timing") or {}
        lat = timing.get("latencies_s") or None
        st = rec.get("stats") or {}
        summary = None
        if lat:
            summary = _summary_ms(lat)
        elif st.get("latency_ms"):
            summary = {**st["latency_ms"], "ci_method": "recorded"}
        speed = st.get("speedup") or None
        if speed:
            speed = {k: speed.get(k) for k in ("ratio", "ci_low", "ci_high", "p_value", "significant",
                                               "ci_level", "method", "verdict")}
        entries.append(
            Entry(
                key=entry_key(model_name, rec.get("strategy"), settings, str(rec.get("strategy"))),
                name=str(rec.get("strategy")),
                model=model_name,
                strategy=rec.get("strategy"),
                settings=settings,
                status=rec.get("status", "ok"),
                error=rec.get("error"),
                latencies_s=lat,
                latency_ms=summary,
                speedup=speed,
                quality={k: _num(v) for k, v in (rec.get("quality") or {}).items()},
                quality_meta=dict(rec.get("quality_meta") or {}),
                fingerprint=(model.get("base_fingerprint") if isinstance(model, dict) else None),
                source=source,
                rounds=timing.get("rounds") or None,
                run_id=rec.get("run_id"),
                probe_s=(rec.get("probe") or {}).get("latencies_s") or None,
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
    from datetime import datetime, timezone

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


# ---------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------
_DELTA = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*:\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")
_BOUND = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(>=|<=)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$")


@dataclass(frozen=True)
class QualityRule:
    """One quality rule.

    ``kind="delta"``: the current value may be at most ``amount`` worse than the baseline's
    (``relative``: a fraction of the baseline's magnitude). ``sign`` is what was written
    (+1, -1, or 0 for none) and must agree with the metric's direction.
    ``kind="bound"``: the current value must be ``>=`` or ``<=`` ``amount``.
    """

    metric: str
    kind: str
    amount: float
    relative: bool = False
    sign: int = 0
    op: str | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> QualityRule:
        """Parse ``psnr:-1``, ``fid:+10%``, ``ssim:0.02``, ``adherence>=0.7`` or ``fid<=40``."""
        m = _DELTA.match(text)
        if m:
            metric, sign, number, pct = m.groups()
            amount = float(number) / (100 if pct else 1)
            return cls(metric, "delta", amount, relative=bool(pct),
                       sign={"+": 1, "-": -1}.get(sign, 0), text=text.strip())
        m = _BOUND.match(text)
        if m:
            metric, op, number = m.groups()
            return cls(metric, "bound", float(number), op=op, text=text.strip())
        raise GateError(
            f"bad quality rule {text!r}: write metric:-1 (at most 1 unit worse), metric:+10% "
            "(at most 10% worse), metric>=value or metric<=value"
        )

    def check_direction(self, higher_is_better: bool) -> None:
        """Refuse a written sign that points the metric's better way."""
        if self.kind != "delta" or self.sign == 0:
            return
        worse = -1 if higher_is_better else 1
        if self.sign != worse:
            word = "drop" if higher_is_better else "rise"
            direction = "higher" if higher_is_better else "lower"
            fixed = f"{self.metric}:{'-' if higher_is_better else '+'}{self.text.split(':', 1)[1].strip().lstrip('+-')}"
            raise GateError(
                f"rule {self.text!r}: {self.metric} is {direction}-is-better, so getting worse is a "
                f"{word}; write {fixed}"
            )


def parse_fraction(text: str | float, what: str = "threshold") -> float:
    """``10%`` or ``0.10`` -> 0.10; anything else is a :class:`GateError`."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
        except ValueError:
            raise GateError(f"bad {what} {text!r}: write 10% or 0.10") from None
        if not s.endswith("%") and value >= 1:
            raise GateError(f"bad {what} {text!r}: a fraction below 1 (0.10) or a percentage (10%)")
    if not (0 <= value < 10) or math.isnan(value):
        raise GateError(f"bad {what} {text!r}: must be between 0 and 1000%")
    return value


@dataclass(frozen=True)
class Rules:
    """What counts as a regression.

    Attributes:
        latency: ``absolute`` (compare latencies), ``speedup`` (compare speedups over each
            side's own reference) or ``off``.
        max_slowdown: relative slowdown tolerated (0.10 = 10%).
        alpha: significance level of the latency test.
        quality: quality rules.
        test: ``auto`` (two arms of one interleaved job are compared round by round: the
            sign test on the per-round log ratios; separate runs through their probes;
            otherwise Mann-Whitney U) or ``mann-whitney`` (never paired).
    """

    latency: str = "absolute"
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN
    alpha: float = DEFAULT_ALPHA
    #: The practical margin of "equivalent" (+-5%).
    margin: float = 0.05
    quality: tuple[QualityRule, ...] = ()
    test: str = "auto"
    #: Compare entries whose settings differ (:data:`COMPARED_SETTINGS`) instead of refusing.
    allow_settings_change: bool = False

    def __post_init__(self) -> None:
        if self.latency not in ("absolute", "speedup", "off"):
            raise GateError(f"latency mode must be absolute, speedup or off, got {self.latency!r}")
        if not 0 < self.alpha < 1:
            raise GateError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.max_slowdown < 0:
            raise GateError(f"max slowdown must be >= 0, got {self.max_slowdown}")
        if self.test not in ("auto", "mann-whitney"):
            raise GateError(f"test must be auto or mann-whitney, got {self.test!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"latency": self.latency, "max_slowdown": self.max_slowdown, "alpha": self.alpha,
                "test": self.test, "quality": [r.text for r in self.quality],
                "allow_settings_change": self.allow_settings_change}


# ---------------------------------------------------------------------------------------
# Comparisons and the verdict
# ---------------------------------------------------------------------------------------
@dataclass
class Check:
    """One check of one matched pair: its numbers and its outcome.

    ``outcome`` is ``pass``, ``regression``, ``improved`` (significantly better), ``skipped``
    (nothing to compare, with the reason) or ``error`` (cannot be compared: exit 2).
    """

    key: str
    kind: str  # latency | speedup | quality | status
    metric: str
    baseline: float | str | None
    current: float | str | None
    change: float | None
    limit: str
    outcome: str
    test: str | None = None
    p_value: float | None = None
    significant: bool | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return sanitize(asdict(self))


@dataclass
class Verdict:
    """All checks and the exit code they add up to."""

    checks: list[Check]
    rules: Rules
    current_sources: list[str]
    baseline_sources: list[str]
    baseline_only: list[str] = field(default_factory=list)
    current_only: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "regression"]

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "error"]

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_USAGE
        return EXIT_REGRESSION if self.regressions else EXIT_PASS

    @property
    def outcome(self) -> str:
        return {EXIT_PASS: "pass", EXIT_REGRESSION: "regression", EXIT_USAGE: "error"}[self.exit_code]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": VERDICT_SCHEMA,
            "verdict": self.outcome,
            "exit_code": self.exit_code,
            "regressions": len(self.regressions),
            "rules": self.rules.as_dict(),
            "current": self.current_sources,
            "baseline": self.baseline_sources,
            "checks": [c.as_dict() for c in self.checks],
            "baseline_only": self.baseline_only,
            "current_only": self.current_only,
            "notes": self.notes,
        }


def _direction(metric: str, *entries: Entry) -> bool:
    """``higher_is_better`` of ``metric`` from the entries' quality_meta, else the registry."""
    for e in entries:
        meta = e.quality_meta.get(metric)
        if isinstance(meta, dict) and meta.get("higher_is_better") is not None:
            return bool(meta["higher_is_better"])
    from bench.quality.base import METRICS

    if metric in METRICS:
        return METRICS[metric].higher_is_better
    raise GateError(f"{metric!r} has no declared direction (higher_is_better) in the inputs")


def compare_latency(base: Entry, cur: Entry, rules: Rules, key: str | None = None) -> Check:
    """Absolute latency check of one pair, through :func:`bench.compare.latency_change`: two
    stacks of one interleaved run are compared round by round (the sign test on the per-round
    ratios, which cancels the machine's drift; with ``rules.test == "mann-whitney"`` they are
    not paired), separate runs through their machine-speed probes, others on their raw samples
    (Mann-Whitney U) or, without raw samples, by whether their 95% intervals are apart. A
    regression is slower by more than ``max_slowdown`` and called ``slower``.
    """
    key = key or cur.key
    limit = f"+{rules.max_slowdown:.0%}"
    if not base.latency_ms or not cur.latency_ms:
        return Check(key, "latency", "latency_ms", None, None, None, limit, "skipped",
                     reason="no latency on one side")
    b, c = base.latency_ms["median"], cur.latency_ms["median"]
    bs, cs = base.samples(), cur.samples()
    if rules.test == "mann-whitney":  # never paired
        from dataclasses import replace

        bs, cs = replace(bs, run_id=None), replace(cs, run_id=None)
    change = compare.latency_change(bs, cs, rules.alpha, rules.margin)
    if change is None:
        return Check(key, "latency", "latency_ms", b, c, None, limit, "skipped",
                     reason="latencies cannot be compared")
    test = {stats.PAIRED: f"sign test ({change.n} paired rounds)",
            stats.PROBED: "probe-corrected",
            stats.INDEPENDENT: "mann-whitney"}.get(change.method, "ci-overlap")
    p = None if math.isnan(change.p_value) else change.p_value
    slowdown = change.change
    slower, faster = change.verdict == "slower", change.verdict == "faster"
    machine = ""
    if change.method == stats.PROBED:
        moved = stats.machine_change(bs.probe_s, cs.probe_s)  # type: ignore[arg-type]
        machine = (f"; the machine was {abs(moved):.0%} {'slower' if moved > 0 else 'faster'} "
                   "during the current run (its probe), divided out")
    if slowdown > rules.max_slowdown and slower:
        outcome, reason = "regression", f"{slowdown:+.1%} slower ({change.verdict}){machine}"
    elif slowdown > rules.max_slowdown:
        outcome, reason = "pass", f"{slowdown:+.1%} but {change.verdict}{machine}"
    elif faster and -slowdown > rules.max_slowdown:
        outcome, reason = "improved", f"{-slowdown:.1%} faster{machine}"
    else:
        outcome, reason = "pass", change.verdict + machine
    return Check(key, "latency", "latency_ms", b, c, slowdown, limit, outcome, test, p,
                 change.significant, reason)


def compare_speedup(base: Entry, cur: Entry, rules: Rules, key: str | None = None) -> Check:
    """Speedup check of one pair: the strategy's gain over its own run's reference."""
    key = key or cur.key
    limit = f"{1 / (1 + rules.max_slowdown) - 1:+.1%}"
    if not base.speedup or not cur.speedup:
        return Check(key, "speedup", "speedup", None, None, None, limit, "skipped",
                     reason="no speedup over a reference on one side")
    b, c = float(base.speedup["ratio"]), float(cur.speedup["ratio"])
    slowdown = b / c - 1  # how much slower, relative to its reference, the strategy got
    b_low = base.speedup.get("ci_low")
    b_high = base.speedup.get("ci_high")
    c_low, c_high = cur.speedup.get("ci_low"), cur.speedup.get("ci_high")
    b_low = b if b_low is None else float(b_low)
    b_high = b if b_high is None else float(b_high)
    worse = c_high is not None and float(c_high) < b_low
    better = c_low is not None and float(c_low) > b_high
    if slowdown > rules.max_slowdown and worse:
        outcome, reason = "regression", f"speedup {b:.2f}x -> {c:.2f}x, intervals apart"
    elif slowdown > rules.max_slowdown:
        outcome, reason = "pass", f"speedup {b:.2f}x -> {c:.2f}x but intervals overlap"
    elif better and -slowdown > rules.max_slowdown:
        outcome, reason = "improved", f"speedup {b:.2f}x -> {c:.2f}x, intervals apart"
    else:
        outcome, reason = "pass", ""
    # The change shown is the speedup's own (+: the stack gained); the limit is the same rule
    # seen from that side: a drop beyond it means the stack became max_slowdown slower.
    return Check(key, "speedup", "speedup", b, c, c / b - 1, limit, outcome, "ci-overlap", None,
                 worse or better, reason)


def compare_quality(base: Entry | None, cur: Entry, rule: QualityRule, key: str | None = None) -> Check:
    """One quality rule on one pair (``base`` may be None for bound rules)."""
    key = key or cur.key
    hib = _direction(rule.metric, cur, *(e for e in (base,) if e is not None))
    rule.check_direction(hib)
    c = cur.quality.get(rule.metric)
    if c is None or math.isnan(c):
        return _missing_quality(base, cur, rule, key, c)
    if rule.kind == "bound":
        ok = c >= rule.amount if rule.op == ">=" else c <= rule.amount
        return Check(key, "quality", rule.metric, None, c, None, rule.text,
                     "pass" if ok else "regression",
                     reason="" if ok else f"{rule.metric} {c:.4g} not {rule.op} {rule.amount:g}")
    if base is None:
        return Check(key, "quality", rule.metric, None, c, None, rule.text, "skipped",
                     reason="no baseline entry")
    if base.fingerprint and cur.fingerprint and base.fingerprint != cur.fingerprint:
        return Check(key, "quality", rule.metric, base.quality.get(rule.metric), c, None, rule.text,
                     "error", reason=f"model weights or call settings differ (baseline {base.fingerprint}, "
                     f"current {cur.fingerprint}): the quality baseline is stale; refresh it")
    b = base.quality.get(rule.metric)
    if b is None or math.isnan(b):
        return Check(key, "quality", rule.metric, None, c, None, rule.text, "skipped",
                     reason=f"{rule.metric} not measured in baseline")
    if b == c:
        worsening = 0.0
    else:
        worsening = (b - c) if hib else (c - b)  # inf when an infinite value became finite
    allowed = rule.amount * abs(b) if rule.relative else rule.amount
    if math.isinf(b) and b == c:
        allowed = 0.0
    change = c - b if math.isfinite(b) and math.isfinite(c) else worsening
    bad = worsening > allowed + 1e-12
    if bad:
        outcome = "regression"
    elif math.isfinite(worsening) and -worsening > allowed:
        outcome = "improved"
    else:
        outcome = "pass"
    reason = f"{rule.metric} worse by {worsening:.4g} (allowed {allowed:.4g})" if bad else ""
    return Check(key, "quality", rule.metric, b, c, change, rule.text, outcome, reason=reason)


def _missing_quality(base: Entry | None, cur: Entry, rule: QualityRule, key: str,
                     value: float | None) -> Check:
    """A quality rule whose metric is NaN or absent in ``cur``: a regression when the
    baseline had a finite value (a metric that stops being a number is not a pass), or when
    a bound cannot be shown to hold because the value is NaN; skipped otherwise."""
    what = "NaN" if value is not None else "missing"
    b = base.quality.get(rule.metric) if base is not None else None
    if b is not None and not math.isnan(b):
        return Check(key, "quality", rule.metric, b, value, None, rule.text, "regression",
                     reason=f"{rule.metric} is {what} in current (baseline {b:.4g})")
    if rule.kind == "bound" and value is not None:
        return Check(key, "quality", rule.metric, None, value, None, rule.text, "regression",
                     reason=f"{rule.metric} is NaN: {rule.text} cannot hold")
    return Check(key, "quality", rule.metric, None, value, None, rule.text, "skipped",
                 reason=f"{rule.metric} not measured in current"
                        + ("" if base is None else " nor in the baseline"))


#: Settings both sides of a comparison must share; a difference makes the figures
#: incomparable (exit 2) unless ``--allow-settings-change``.
COMPARED_SETTINGS = ("steps", "resolution", "load_dtype", "dtype", "threads", "quality_images",
                     "batch_size", "device")


def settings_changes(base: Entry, cur: Entry) -> list[str]:
    """The compared settings recorded on both sides that differ, as ``name (baseline a,
    current b)``."""
    out = []
    for name in COMPARED_SETTINGS:
        a, b = base.settings.get(name), cur.settings.get(name)
        if a is not None and b is not None and a != b:
            out.append(f"{name} (baseline {a}, current {b})")
    return out


def _status_check(base: Entry, cur: Entry, key: str) -> Check | None:
    if base.status == "ok" and cur.status != "ok":
        return Check(key, "status", "status", base.status, cur.status, None, "ok", "regression",
                     reason=cur.error or "")
    if base.status != "ok" and cur.status != "ok":
        return Check(key, "status", "status", base.status, cur.status, None, "ok", "skipped",
                     reason=f"not ok on either side: {cur.error or ''}")
    return None


def compare_pair(base: Entry, cur: Entry, rules: Rules, key: str | None = None) -> list[Check]:
    """Every check of one matched pair."""
    key = key or cur.key
    status = _status_check(base, cur, key)
    if status is not None:
        return [status]
    checks: list[Check] = []
    if cur.status == "ok" and base.status == "ok":
        if rules.latency == "absolute":
            checks.append(compare_latency(base, cur, rules, key))
        elif rules.latency == "speedup" and cur.strategy != REFERENCE_STRATEGY:
            checks.append(compare_speedup(base, cur, rules, key))
    for rule in rules.quality:
        checks.append(compare_quality(base, cur, rule, key))
    return checks


def _check_rules_apply(rules: Rules, entries: Sequence[Entry]) -> None:
    present = {m for e in entries for m in e.quality}
    for rule in rules.quality:
        if rule.metric not in present:
            have = ", ".join(sorted(present)) or "none"
            raise GateError(f"rule {rule.text!r}: no input measured {rule.metric!r} (measured: {have})")
        rule.check_direction(_direction(rule.metric, *entries))


def gate(
    current: Sequence[Entry],
    baseline: Sequence[Entry] | None,
    rules: Rules,
    current_sources: Sequence[str] = (),
    baseline_sources: Sequence[str] = (),
) -> Verdict:
    """Match ``current`` with ``baseline`` by key and run every check.

    With ``baseline=None`` only bound rules (``metric>=x``) and status apply, to ``current``.
    Raises :class:`GateError` when nothing can be compared or a rule cannot apply.
    """
    _check_rules_apply(rules, list(current) + list(baseline or []))
    checks: list[Check] = []
    verdict = Verdict(checks, rules, list(current_sources), list(baseline_sources))
    if baseline is None:
        for cur in current:
            if cur.status != "ok":
                checks.append(Check(cur.key, "status", "status", None, cur.status, None, "ok",
                                    "regression", reason=cur.error or ""))
                continue
            for rule in rules.quality:
                if rule.kind == "bound":
                    checks.append(compare_quality(None, cur, rule))
        if not checks:
            raise GateError("nothing to check: give --baseline, or bound rules such as adherence>=0.7")
        return verdict
    base_by_key = {e.key: e for e in baseline}
    cur_by_key = {e.key: e for e in current}
    matched = [k for k in cur_by_key if k in base_by_key]
    pairs = [(base_by_key[k], cur_by_key[k], k) for k in matched]
    _pair_by_stack(base_by_key, cur_by_key, matched, pairs)
    matched = [k for _, _, k in pairs]
    paired = {id(e) for b, c, _ in pairs for e in (b, c)}
    verdict.baseline_only = [k for k, e in base_by_key.items() if id(e) not in paired]
    verdict.current_only = [k for k, e in cur_by_key.items() if id(e) not in paired]
    if not matched:
        raise GateError(
            "nothing to compare: no benchmark appears on both sides "
            f"(baseline: {', '.join(sorted(base_by_key)) or 'none'}; "
            f"current: {', '.join(sorted(cur_by_key)) or 'none'})"
        )
    _check_pairs(verdict, pairs)
    if not verdict.checks:
        raise GateError(
            "nothing was checked: the matched entries ("
            + ", ".join(matched) + f") give no {rules.latency} check and no quality rule applies"
        )
    if verdict.baseline_only:
        verdict.notes.append("only in the baseline (not checked): " + ", ".join(verdict.baseline_only))
    return verdict


def _pair_by_stack(base_by_key: dict[str, Entry], cur_by_key: dict[str, Entry],
                   matched: Sequence[str], pairs: list[tuple[Entry, Entry, str]]) -> None:
    """Pair the unmatched entries that are one stack on both sides (one each) measured at
    another batch size, so that the settings check names the change instead of the entries
    going unchecked."""
    def unmatched(side: dict[str, Entry]) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = {}
        for k, e in side.items():
            if k not in matched and (stack := _same_stack(e)):
                out.setdefault(stack, []).append(e)
        return out

    base_left, cur_left = unmatched(base_by_key), unmatched(cur_by_key)
    for stack, curs in cur_left.items():
        bases = base_left.get(stack, [])
        if len(curs) == 1 and len(bases) == 1:
            pairs.append((bases[0], curs[0], stack))


def _check_pairs(verdict: Verdict, pairs: Sequence[tuple[Entry, Entry, str]],
                 settings: bool = True) -> None:
    """Every check of every pair; with ``settings``, a pair whose settings differ is an
    error (exit 2) unless the rules allow it, when it is compared with a note."""
    for base, cur, k in pairs:
        changes = settings_changes(base, cur) if settings else []
        if changes and not verdict.rules.allow_settings_change:
            verdict.checks.append(Check(
                k, "settings", "settings", None, None, None, "same", "error",
                reason="settings differ: " + "; ".join(changes)
                       + " (rerun with the baseline's settings, or pass --allow-settings-change)"))
            continue
        if changes:
            verdict.notes.append(f"{k}: compared although settings differ: " + "; ".join(changes))
        verdict.checks.extend(compare_pair(base, cur, verdict.rules, k))
    control_fdr(verdict)


def _same_stack(entry: Entry) -> str | None:
    """Model and strategy alone: entries of one stack measured at another batch size."""
    return f"{entry.model} | {entry.strategy}" if entry.model and entry.strategy else None


def control_fdr(verdict: Verdict) -> None:
    """Hold the false discovery rate of the latency checks at ``rules.alpha``
    (Benjamini-Hochberg over every latency check with a test): a slowdown or gain that is not
    a discovery among them passes, saying so."""
    tested = [c for c in verdict.checks if c.kind == "latency" and c.p_value is not None]
    if len(tested) < 2:
        return
    found = stats.benjamini_hochberg([c.p_value for c in tested], verdict.rules.alpha)
    demoted = 0
    for check, discovery in zip(tested, found, strict=True):
        if check.outcome in ("regression", "improved") and not discovery:
            check.outcome = "pass"
            check.reason += f" (not a discovery at {verdict.rules.alpha:.0%} false discovery rate)"
            demoted += 1
    verdict.notes.append(
        f"latency verdicts hold the false discovery rate at {verdict.rules.alpha:.0%} over "
        f"{len(tested)} checks (Benjamini-Hochberg)" + (f"; {demoted} not a discovery" if demoted else ""))


def gate_pairs(
    pairs: Sequence[tuple[Entry, Entry]], rules: Rules, sources: Sequence[str] = ()
) -> Verdict:
    """Check explicit (baseline, current) pairs, e.g. each candidate arm of an interleaved
    A/B job against its reference arm; keys read ``candidate vs reference``."""
    entries = [e for pair in pairs for e in pair]
    _check_rules_apply(rules, entries)
    verdict = Verdict([], rules, list(sources), list(sources))
    _check_pairs(verdict, [(b, c, f"{c.name} vs {b.name}") for b, c in pairs], settings=False)
    return verdict


def gate_against_reference(
    current: Sequence[str | os.PathLike], reference: str, rules: Rules
) -> Verdict:
    """Every stack of ``current`` against the ``reference`` stack of the same run (model,
    batch size and device); keys read ``candidate vs reference``."""
    from strategies import parse_stack

    spec = parse_stack(reference).spec
    entries = read_many(current)
    refs = {(e.run_id, e.model, e.settings.get("batch_size"), e.settings.get("device")): e
            for e in entries if e.strategy == spec}
    if not refs:
        raise GateError(f"no {spec!r} stack in {', '.join(map(str, current))} to compare with")
    pairs = []
    for e in entries:
        ref = refs.get((e.run_id, e.model, e.settings.get("batch_size"), e.settings.get("device")))
        if ref is not None and e is not ref:
            pairs.append((ref, e))
    if not pairs:
        raise GateError(f"nothing to compare with {spec!r}: the inputs hold no other stack of its runs")
    return gate_pairs(pairs, rules, [str(p) for p in current])


def gate_paths(
    current: Sequence[str | os.PathLike], baseline: Sequence[str | os.PathLike] | None, rules: Rules
) -> Verdict:
    """:func:`gate` over files and run directories."""
    cur = read_many(current)
    base = read_many(baseline) if baseline else None
    return gate(cur, base, rules, [str(p) for p in current], [str(p) for p in baseline or []])


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def _fmt(value: Any, kind: str) -> str:
    if kind == "latency":
        return fmt(value, ".2f") + (" ms" if isinstance(value, (int, float)) else "")
    if kind == "speedup":
        return fmt(value, ".2f") + ("x" if isinstance(value, (int, float)) else "")
    return fmt(value, ".4g")


def _fmt_change(check: Check) -> str:
    if check.change is None:
        return "-"
    if math.isinf(check.change):
        return "inf"
    if check.kind in ("latency", "speedup"):
        return f"{check.change:+.1%}"
    return f"{check.change:+.4g}"


_MARK = {"pass": "ok", "regression": "REGRESSION", "improved": "improved", "skipped": "skipped",
         "error": "ERROR"}


def format_table(verdict: Verdict) -> str:
    """A plain-text table of every check and the verdict line."""
    header = ("benchmark", "check", "baseline", "current", "change", "limit", "test", "result")
    rows = [header]
    for c in verdict.checks:
        test = "-"
        if c.test == "mann-whitney" and c.p_value is not None:
            test = f"MWU p={c.p_value:.3g}"
        elif c.test and c.test.startswith("sign test") and c.p_value is not None:
            test = f"paired p={c.p_value:.3g}"
        elif c.test == "probe-corrected" and c.p_value is not None:
            test = f"probe p={c.p_value:.3g}"
        elif c.test:
            test = c.test
        result = _MARK[c.outcome] + (f": {c.reason}" if c.reason else "")
        rows.append((c.key, c.metric, _fmt(c.baseline, c.kind), _fmt(c.current, c.kind),
                     _fmt_change(c), c.limit, test, result))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    for note in verdict.notes:
        lines.append(f"note: {note}")
    n_reg, n_err = len(verdict.regressions), len(verdict.errors)
    summary = {
        "pass": f"PASS: {len(verdict.checks)} checks, no regression",
        "regression": f"FAIL: {n_reg} regression(s) in {len(verdict.checks)} checks",
        "error": f"ERROR: {n_err} check(s) could not be made",
    }[verdict.outcome]
    lines.append(summary)
    return "\n".join(lines)


def write_verdict(verdict: Verdict, path: str | os.PathLike) -> Path:
    """Write the machine-readable verdict."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(verdict.as_dict(), indent=1) + "\n", encoding="utf-8")
    return out


__all__ = [
    "BASELINE_SCHEMA", "Check", "Entry", "GateError", "QualityRule", "Rules", "Verdict",
    "compare_latency", "compare_pair", "compare_quality", "compare_speedup", "format_table",
    "entries_from_records", "gate", "gate_against_reference", "gate_pairs", "gate_paths", "parse_fraction", "read_entries", "read_many", "save_baseline",
    "write_verdict",
]
