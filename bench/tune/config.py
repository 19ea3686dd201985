"""What a search is: its constraints (the one rule grammar), configuration, trials and
result. This module imports no torch."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import RuleError, TuneError
from bench.core.formats import sanitize
from bench.core.metrics import METRICS
from bench.core.rules import Rule

OBJECTIVES = ("latency", "energy", "memory")
#: A trial is pruned only beyond this slowdown, whatever the best speedup so far: one
#: round's ratio is noisy.
MIN_PRUNE_SLOWDOWN = 2.0
LOCK_FILE = ".tune.lock"
TUNE_FILE = "tune.json"
SCHEMA = "accelbench.tune/1"
#: Worse than anything a metric can score, for trials that did not measure it.
_WORST = 1e12


class Constraint:
    """A tune constraint: a bound rule of the one grammar (:class:`bench.core.rules.Rule`):
    ``adherence>=0.97``, ``psnr>=30`` or ``fid<=floor``; a delta has no meaning in a search."""

    @staticmethod
    def parse(text: str) -> Rule:
        """Parse one constraint; a :class:`TuneError` says what is wrong."""
        try:
            return Rule.parse(text, kinds=("bound",), metrics=METRICS)
        except RuleError as exc:
            raise TuneError(str(exc).replace("rule", "constraint", 1)) from None


def violation(rule: Rule, value: float | None, bound: float | None) -> float:
    """How far ``value`` misses ``rule``'s bound (<= 0: met), finite for the sampler."""
    return min(rule.violation(value, bound), _WORST)


@dataclass(frozen=True)
class TuneConfig:
    """One search.

    Attributes:
        model: what to tune.
        constraints: quality floors (empty: multi-objective).
        objective: ``latency``, ``energy`` or ``memory`` (per image).
        budget_s: wall seconds this invocation may spend.
        out_dir: the tune folder (a sweep folder of trials, ``final/``, ``tune.json``).
        storage: an Optuna storage URL (None: SQLite in ``out_dir``).
        executor, address, workers, threads: where trials run (see :mod:`bench.sweep.executors`).
        device, batch_size: the generation settings.
        allow_training: let training strategies join the search.
        strategies: only these strategies (None: every registered one).
        max_trials: stop after this many finished trials in the study.
        promote: candidates measured in full.
        cheap_iterations, cheap_quality_images: each trial's measurement.
        full_iterations, full_quality_images: the candidates' measurement.
        seed: the sampler's seed.
    """

    model: str
    constraints: tuple[Rule, ...] = ()
    objective: str = "latency"
    budget_s: float = 1800.0
    out_dir: Path = Path("runs/tune")
    storage: str | None = None
    executor: str = "local"
    address: str | None = None
    workers: int = 1
    threads: int | None = None
    device: str = "cpu"
    batch_size: int = 8
    allow_training: bool = False
    strategies: tuple[str, ...] | None = None
    max_trials: int | None = None
    promote: int = 3
    cheap_iterations: int = 6
    cheap_quality_images: int = 200
    full_iterations: int = 10
    full_quality_images: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TuneError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.budget_s <= 0:
            raise TuneError(f"budget must be positive, got {self.budget_s} s")
        for name in ("workers", "promote", "cheap_iterations", "full_iterations"):
            if getattr(self, name) < 1:
                raise TuneError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def study_name(self) -> str:
        """The same command names the same study (so it resumes)."""
        key = json.dumps({"model": self.model, "objective": self.objective, "device": self.device,
                          "batch": self.batch_size, "constraints": [c.text for c in self.constraints],
                          "training": self.allow_training, "only": self.strategies}, sort_keys=True)
        return f"tune-{self.model}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["constraints"] = [c.text for c in self.constraints]
        return data


@dataclass
class Trial:
    """One finished (or rejected) trial."""

    number: int
    stack: str
    state: str
    objective: float | None = None
    values: list[float] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    feasible: bool | None = None
    speedup: float | None = None
    training_s: float | None = None
    job_id: str | None = None
    reason: str | None = None


@dataclass
class TuneResult:
    """What a search found."""

    config: TuneConfig
    trials: list[Trial]
    candidates: list[dict[str, Any]]
    best: dict[str, Any] | None
    front: list[dict[str, Any]]
    seconds: float
    space: dict[str, Any]
    #: Each constraint's numeric bound at the trials' fidelity (``floor`` resolved).
    bounds: dict[str, float | None] = field(default_factory=dict)
    #: How the candidates' figures were measured (in full, shrunk to fit, or cheap only).
    measured: str = ""

    def as_dict(self) -> dict[str, Any]:
        return sanitize({
            "schema": SCHEMA, "config": self.config.as_dict(), "seconds": self.seconds,
            "space": self.space, "bounds": self.bounds, "trials": [asdict(t) for t in self.trials],
            "candidates": self.candidates, "best": self.best, "front": self.front,
            "measured": self.measured,
            "final_run": "final" if self.measured.startswith("in full") else None,
        })


def parse_budget(text: str) -> float:
    """``30m``, ``1h``, ``90s`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise TuneError(f"bad budget {text!r}: write 30m, 1h, 90s or seconds")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


__all__ = ["OBJECTIVES", "Constraint", "Trial", "TuneConfig", "TuneResult", "parse_budget", "violation"]
