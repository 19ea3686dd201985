"""The record: one JSON object per (model, strategy stack, settings), built in one place.

:class:`Record` is the typed form of what :mod:`bench.results` appends and ``load`` reads.
The engine fills it as it measures; sweep jobs add their ``sweep`` and ``reference`` blocks;
a job that produced nothing gets its record from :func:`failure_record`. ``to_dict`` leaves
out blocks that were not measured (a failed or unsupported stack has no ``timing``), so
readers use ``.get``. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

SCHEMA = "accelbench.record/2"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
            encoders and decoder apart, and of the whole call (:mod:`bench.flops`).
        load: the machine's load during the run (:mod:`bench.machine`).
        decoding: token models' decoding counts (forward passes, acceptance...).
        quality, quality_meta, quality_details, quality_noise_floor: see :mod:`bench.quality`.
        caveats: what makes a figure of this record less than it seems, in words.
        slower_because: when the stack is significantly slower than the baseline, the likely
            reasons the record's own facts show (:mod:`bench.explain`).
        probe: the run's machine-speed probe (:mod:`bench.probe`): its samples so far, their
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


__all__ = ["SCHEMA", "Record", "failure_record", "now"]
