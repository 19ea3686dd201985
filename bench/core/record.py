"""The record: one JSON object per (model, strategy stack, settings), built in one place.

:class:`Record` is the typed form of what :mod:`bench.core.results` appends and ``load`` reads.
The engine fills it as it measures; sweep jobs add their ``sweep`` and ``reference`` blocks;
a job that produced nothing gets its record from :func:`failure_record`. ``to_dict`` leaves
out blocks that were not measured (a failed or unsupported stack has no ``timing``), so
readers use ``.get``. This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from bench.core.formats import number

SCHEMA = "accelbench.record/2"
#: The stack every run measures first, as loaded (no technique): what the others are
#: compared with. Records name it in ``strategy``.
REFERENCE = "baseline"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------
# Reading: typed views of a record's blocks, tolerant of what older records lack
# ---------------------------------------------------------------------------------------
def _float(value: Any) -> float | None:
    return number(value)


def _floats(values: Any) -> list[float]:
    """The numbers of a list (anything else in it left out; not a list: none)."""
    if not isinstance(values, list):
        return []
    return [f for f in (number(v) for v in values) if f is not None]


@dataclass(frozen=True)
class Latency:
    """A latency summary in milliseconds (``stats.latency_ms``)."""

    median: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    iqr: float | None = None
    n: int | None = None
    ci_method: str | None = None

    @classmethod
    def from_dict(cls, block: Mapping[str, Any] | None) -> Latency | None:
        if not block:
            return None
        n = block.get("n")
        return cls(_float(block.get("median")), _float(block.get("ci_low")),
                   _float(block.get("ci_high")), _float(block.get("iqr")),
                   int(n) if n is not None else None, block.get("ci_method"))


@dataclass(frozen=True)
class Speedup:
    """The speedup over the run's reference (``stats.speedup``): ratio, interval, test."""

    ratio: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    significant: bool | None = None
    ci_level: float | None = None
    method: str | None = None
    verdict: str | None = None

    @classmethod
    def from_dict(cls, block: Mapping[str, Any] | None) -> Speedup | None:
        if not block:
            return None
        return cls(_float(block.get("ratio")), _float(block.get("ci_low")),
                   _float(block.get("ci_high")), _float(block.get("p_value")),
                   block.get("significant"), _float(block.get("ci_level")), block.get("method"),
                   block.get("verdict"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calls:
    """The raw samples of the timed calls (``timing``)."""

    latencies_s: list[float]
    rounds: list[int] | None = None
    step_times_s: list[list[float]] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)

    @classmethod
    def from_dict(cls, block: Mapping[str, Any] | None) -> Calls:
        block = block or {}
        rounds = block.get("rounds")
        steps = block.get("step_times_s")
        return cls(_floats(block.get("latencies_s")),
                   [int(r) for r in _floats(rounds)] if isinstance(rounds, list) and rounds else None,
                   [_floats(s) for s in steps] if isinstance(steps, list) else [],
                   _floats(block.get("warmup_s")))


@dataclass(frozen=True)
class Scores:
    """Quality: each metric's value (NaN where recorded as not a number), its declaration
    (direction, unit), details and the reference's noise floor."""

    values: dict[str, float]
    meta: dict[str, dict[str, Any]]
    details: dict[str, Any]
    noise_floor: dict[str, Any]

    def get(self, metric: str) -> float | None:
        """The metric's value; None where not measured."""
        return self.values.get(metric)


@dataclass
class Record:
    """One measured (or refused, or failed) strategy stack.

    Attributes:
        run_id: the run that measured it (stacks of one run share it; their rounds pair).
        model: the model's description (``ReferenceModel.describe()``), name at least.
        strategy: the canonical stack spec.
        status: ``ok``, ``unsupported`` (with the reason), ``same`` (the stack leaves the
            model as it is, with the reason; not timed) or ``failed`` (with the error).
        settings: device, batch size, steps, resolution, dtype, quality images, seed.
        schedule: how it was timed: ``name`` (interleaved or sequential), why that one,
            rounds and block (interleaved), arm order.
        timing: raw samples (latencies, bounds, step times, rounds, warm-up).
        stats: derived: latency summary, ms/image, images/s, speedup over the run's
            reference with its interval, test and method; token rates for token models.
        cold: one-off costs: load, apply, first call, compile, training, break-even images.
        memory, energy: peaks and energy of this stack's own calls, and how obtained.
        sampler: the sampler's summary over this stack's calls.
        model_size: parameters; FLOPs per denoising step or token, of the once-per-call
            encoders and decoder apart, and of the whole call (:mod:`bench.measure.flops`).
        load: the machine's load during the run (:mod:`bench.measure.machine`).
        decoding: token models' decoding counts (forward passes, acceptance...).
        quality, quality_meta, quality_details, quality_noise_floor: see :mod:`bench.quality`.
        caveats: what makes a figure of this record less than it seems, in words.
        slower_because: when the stack is significantly slower than the baseline, the likely
            reasons the record's own facts show (:mod:`bench.core.explain`).
        probe: the run's machine-speed probe (:mod:`bench.measure.probe`): its samples so far, their
            median and what it is; separate runs are compared through it.
    """

    run_id: str | None
    model: dict[str, Any]
    strategy: str | None
    status: str = "ok"
    error: str | None = None
    created: str = field(default_factory=now)
    stack: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    cold: dict[str, Any] | None = None
    notes: dict[str, Any] | None = None
    sampler: dict[str, Any] | None = None
    series_file: str | None = None
    memory: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None
    model_size: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    decoding: dict[str, Any] | None = None
    images: str | None = None
    image_prompts: list[str] | None = None
    image_seeds: list[int] | None = None
    quality: dict[str, Any] | None = None
    quality_meta: dict[str, Any] | None = None
    quality_details: dict[str, Any] | None = None
    quality_noise_floor: dict[str, Any] | None = None
    caveats: list[str] = field(default_factory=list)
    slower_because: list[str] = field(default_factory=list)
    interleave: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    traceback: str | None = None
    log_tail: str | None = None
    probe: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """The record a ``results.jsonl`` line holds (:meth:`to_dict`'s inverse). Keys this
        version does not know are left out, so a record written by a newer accelbench reads."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("run_id", None)
        kwargs.setdefault("model", {})
        kwargs.setdefault("strategy", None)
        if not isinstance(kwargs["model"], dict):
            kwargs["model"] = {"name": kwargs["model"]}
        for name in ("settings", "config", "environment"):  # odd files: blocks of another type
            if not isinstance(kwargs.get(name, {}), dict):
                kwargs[name] = {}
        for name in ("stack", "caveats", "slower_because"):
            if not isinstance(kwargs.get(name, []), list):
                kwargs[name] = []
        kwargs["status"] = kwargs.get("status") or "ok"
        return cls(**kwargs)

    # -- typed reading ----------------------------------------------------------------
    @property
    def model_name(self) -> str | None:
        """The model's name."""
        return self.model.get("name")

    @property
    def fingerprint(self) -> str | None:
        """The reference model's weights and call settings, hashed: quality is comparable
        only between equal fingerprints."""
        return self.model.get("base_fingerprint")

    @property
    def is_reference(self) -> bool:
        """The run's reference stack (:data:`REFERENCE`)."""
        return self.strategy == REFERENCE

    @property
    def batch_size(self) -> int:
        """Images per call (1 where not recorded)."""
        return int(self.settings.get("batch_size") or 1)

    @property
    def latency_ms(self) -> Latency | None:
        """The latency summary in ms (``stats.latency_ms``), None where not timed."""
        return Latency.from_dict((self.stats or {}).get("latency_ms"))

    @property
    def speedup(self) -> Speedup | None:
        """The speedup over the run's reference, None for the reference itself or untimed."""
        return Speedup.from_dict((self.stats or {}).get("speedup"))

    @property
    def ms_per_image(self) -> float | None:
        return number((self.stats or {}).get("ms_per_image"))

    @property
    def images_per_s(self) -> float | None:
        return number((self.stats or {}).get("images_per_s"))

    def stat(self, name: str) -> float | None:
        """A numeric figure of ``stats`` by name (token rates, acceptance...), None if absent."""
        return number((self.stats or {}).get(name))

    @property
    def calls(self) -> Calls:
        """The raw samples of the timed calls (empty where not timed)."""
        return Calls.from_dict(self.timing)

    @property
    def scores(self) -> Scores:
        """Quality values (NaN kept: a metric recorded as not a number), declarations,
        details and the reference's noise floor."""
        values = {}
        for name, value in (self.quality or {}).items():
            parsed = number(value)
            values[name] = float("nan") if parsed is None else parsed
        return Scores(values, dict(self.quality_meta or {}), dict(self.quality_details or {}),
                      dict(self.quality_noise_floor or {}))

    @property
    def cold_costs(self) -> dict[str, float]:
        """One-off costs that are numbers (``load_s``, ``apply_s``, ``first_call_s``...)."""
        out = {}
        for name, value in (self.cold or {}).items():
            parsed = number(value)
            if parsed is not None:
                out[name] = parsed
        return out

    @property
    def peak_memory_mb(self) -> float | None:
        """The peak memory of this stack's own calls (MB)."""
        return number((self.memory or {}).get("peak_mb"))

    @property
    def energy_j_per_image(self) -> float | None:
        """Energy per image of this stack's own calls (J), where measured."""
        return number((self.energy or {}).get("j_per_image"))

    @property
    def probe_latencies_s(self) -> list[float] | None:
        """The run's machine-speed probe samples (s), where recorded."""
        return _floats((self.probe or {}).get("latencies_s")) or None

    @property
    def params(self) -> float | None:
        """Parameter count, from ``model_size`` or the model's description."""
        return number((self.model_size or {}).get("params", self.model.get("params")))

    def size(self, name: str) -> float | None:
        """A figure of ``model_size`` (``flops_per_step``, ``flops_once``...)."""
        return number((self.model_size or {}).get(name))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, status: str, error: str) -> None:
        """Mark the record ``unsupported`` or ``failed`` with the reason."""
        self.status, self.error = status, error

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record: every field that was set (None blocks left out)."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name not in ("error", "run_id", "strategy"):
                continue
            if f.name in ("caveats", "slower_because") and not value:
                continue
            out[f.name] = value
        return out


def failure_record(model: str | None, strategy: str | None, error: str, *, kind: str,
                   status: str = "failed", settings: dict[str, Any] | None = None,
                   config: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
                   log_tail: str | None = None) -> Record:
    """The record of a measurement that produced none itself (a crash, a kill, a timeout, a
    model that did not load), so that it still loads as a row with its reason.

    ``kind`` is ``timeout``, ``crash``, ``killed``, ``oom``, ``error`` or ``unsupported``;
    ``details`` adds e.g. the time limit or the exit status to ``failure``.
    """
    return Record(
        run_id=None, model={"name": model}, strategy=strategy, status=status, error=error,
        settings=dict(settings or {}), config=dict(config or {}),
        failure={"kind": kind, **(details or {})}, log_tail=log_tail,
    )


__all__ = ["REFERENCE", "SCHEMA", "Calls", "Latency", "Record", "Scores", "Speedup",
           "failure_record", "now"]
