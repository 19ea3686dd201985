"""``accelbench tune``: the fastest (or leanest) stack of a model above a quality floor.

The search space comes from the strategy registry (:mod:`bench.search_space`); Optuna searches
it. With constraints, a constrained single-objective search (TPE with Optuna's constraint
handling); without, a multi-objective one (NSGA-II over the objective and the model's quality
metrics) whose answer is the Pareto front.

Cheap first, expensive for the promising:

1. **Every trial** is one sweep job (:mod:`bench.sweep`) run by the sweep executors (local
   processes, or Ray tasks with ``--executor ray``): the trial's stack interleaved with the
   baseline in one process, a few timed calls, a few quality images. Its objective is
   relative to the baseline it was timed against (the speedup's inverse for latency), so the
   machine's drift between trials does not move it.
2. **The best candidates** (the best feasible trials, or the Pareto front) are then measured
   together, with the baseline, in one full interleaved engine run (more calls, the full
   quality images), and the constraints are checked again on those figures. That run is the
   answer, with each speedup's interval.

The budget is the wall time of the whole invocation, the final measurement included: trials
are asked only while the next one and the smallest final measurement still fit, each trial's
job is cut at what is left, and the final measurement shrinks (fewer quality images, fewer
rounds, fewer candidates) to fit what remains, estimated from the trials' own call times;
when not even its smallest form fits, the answer is the trials' cheap figures, labelled so.
A trial whose stack is, after a timed round, slower than the baseline by more than the best
speedup found so far (and at least :data:`MIN_PRUNE_SLOWDOWN`) is stopped there and recorded
as pruned (Optuna's ``PRUNED`` state, with its intermediate ratio reported). For a latency or
energy objective a step count is searched below the model's own.

The study lives in the output folder (``study.db``, SQLite) unless ``--storage`` names another
Optuna storage (for many machines); run the same command again to continue it: finished
trials are kept (and their jobs are not measured again), a trial cut by a kill is marked
failed. Training strategies join only with ``--allow-training``; their one-off cost is kept
with each trial and shown beside it.

Constraints: ``metric>=value`` or ``metric<=value`` on a quality metric (``adherence>=0.97``,
``psnr>=30``, ``fid<=3``), where ``floor`` as the value means "within the baseline's noise
band": the baseline's value measured in the same way, plus (for lower-is-better metrics) or
minus two standard deviations of the noise floor at the same number of images.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.formats import number, sanitize
from bench.tune_budget import WARMUP, Budget
from bench.tune_screening import Screening, state

OBJECTIVES = ("latency", "energy", "memory")
#: Noise-floor standard deviations that make "within the band".
FLOOR_SIGMAS = 2.0
#: A trial is pruned only beyond this slowdown, whatever the best speedup so far: one
#: round's ratio is noisy.
MIN_PRUNE_SLOWDOWN = 2.0
LOCK_FILE = ".tune.lock"
TUNE_FILE = "tune.json"
SCHEMA = "accelbench.tune/1"
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(>=|<=)\s*(floor|[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$")
#: Worse than anything a metric can score, for trials that did not measure it.
_WORST = 1e12


class TuneError(ValueError):
    """A search that cannot run as asked; the message says why."""


@dataclass(frozen=True)
class Constraint:
    """``metric >= value`` or ``metric <= value``; ``value`` None means the noise floor."""

    metric: str
    op: str
    value: float | None
    text: str

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse ``adherence>=0.97``, ``psnr>=30`` or ``fid<=floor``."""
        from bench.quality.base import METRICS

        m = _CONSTRAINT.match(text)
        if not m:
            raise TuneError(f"bad constraint {text!r}: write metric>=value or metric<=value, e.g. "
                            "adherence>=0.97, psnr>=30, fid<=floor")
        metric, op, value = m.groups()
        if metric not in METRICS:
            close = difflib.get_close_matches(metric, METRICS, n=2, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise TuneError(f"constraint {text!r}: unknown metric {metric!r}{hint} "
                            f"(metrics: {', '.join(METRICS)})")
        if value == "floor" and metric not in ("fid", "kid", "adherence"):
            raise TuneError(f"constraint {text!r}: 'floor' is the noise band of a distribution "
                            "metric (fid, kid) or adherence; give a number for "
                            f"{metric}")
        higher = METRICS[metric].higher_is_better
        if value == "floor" and (op == ">=") != higher:
            need = ">=" if higher else "<="
            raise TuneError(f"constraint {text!r}: {metric} is {'higher' if higher else 'lower'}-is-"
                            f"better, so a floor bounds it with {need}: {metric}{need}floor")
        return cls(metric, op, None if value == "floor" else float(value), text.strip())

    def bound(self, baseline: dict[str, Any] | None) -> float | None:
        """The numeric bound; for ``floor``, from the baseline record measured the same way."""
        if self.value is not None:
            return self.value
        if not baseline:
            return None
        base = number((baseline.get("quality") or {}).get(self.metric))
        floor = ((baseline.get("quality_noise_floor") or {}).get(self.metric) or {})
        std = number(floor.get("std"))
        if base is None or std is None:
            return None
        return base + FLOOR_SIGMAS * std if self.op == "<=" else base - FLOOR_SIGMAS * std

    def violation(self, value: float | None, bound: float | None) -> float:
        """How far ``value`` is on the wrong side of ``bound`` (<= 0: satisfied)."""
        if value is None or bound is None or math.isnan(value):
            return _WORST
        return (bound - value) if self.op == ">=" else (value - bound)


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
        executor, address, workers, threads: where trials run (see :mod:`bench.executors`).
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
    constraints: tuple[Constraint, ...] = ()
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


class Tuner(Budget, Screening):
    """Runs one :class:`TuneConfig` (see the module docstring)."""

    def __init__(self, config: TuneConfig, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.log = log or (lambda msg: None)
        self.out = Path(config.out_dir)
        self.started = time.perf_counter()
        self.baseline: dict[str, Any] | None = None

    # -- the search ------------------------------------------------------------------------
    def run(self) -> TuneResult:
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.out / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            raise TuneError(f"another accelbench tune is running in {self.out}") from None
        try:
            return self._run()
        finally:
            os.close(lock)

    def _run(self) -> TuneResult:
        from bench import search_space
        from bench.models import load_model
        from bench.models.base import ModelSpec

        cfg = self.config
        model = load_model(ModelSpec(cfg.model, device=cfg.device))
        space = search_space.derive(model, allow_training=cfg.allow_training, only=cfg.strategies,
                                    for_speed=cfg.objective in ("latency", "energy"))
        if not space.strategies:
            raise TuneError(f"no strategy can apply to {cfg.model}: "
                            + "; ".join(f"{k}: {v}" for k, v in space.excluded.items()))
        self.log(f"search space for {cfg.model}: {search_space.size(space)}")
        study = self._study()
        for t in study.get_trials(deepcopy=False):
            if t.state.name == "RUNNING":  # cut short by a kill: its job may be done; ask again
                study.tell(t.number, state=state("FAIL"))
        t0 = self._elapsed()
        self.baseline = self._measure(["baseline"])["baseline"]
        self._batch_s = [self._elapsed() - t0]
        if self.baseline.get("status") != "ok":
            raise TuneError(f"the baseline of {cfg.model} failed: {self.baseline.get('error')}")
        self._check_objective(self.baseline)
        t0 = self._elapsed()
        self._screen(study, space)
        if self._elapsed() - t0 > 1:
            self.log(f"screening took {(self._elapsed() - t0) / 60:.1f} min")
        while not self._enough(study) and self._room_for_a_trial():
            t0 = self._elapsed()
            self._batch(study, space)
            self._batch_s.append(self._elapsed() - t0)
            self._trim(study)
        trials = self._trials(study)
        if not any(t.state == "complete" for t in trials):
            raise TuneError(
                f"no trial was measured within the budget ({cfg.budget_s / 60:.1f} min; the baseline "
                f"alone took {self._batch_s[0] / 60:.1f} min): give a larger --budget"
                + ("" if not self.baseline.get("load", {}).get("oversubscribed")
                   else "; the machine was busy with other work (see the load warning)"))
        candidates = self._candidates(study, trials)
        plan = self._final_plan(candidates, trials) if candidates else None
        if plan is not None:
            rows, best, front = self._answer(self._full(*plan))
            measured = (f"in full: {plan[1]} interleaved rounds, {plan[2]} quality images"
                        + ("" if plan[1:3] == (cfg.full_iterations, cfg.full_quality_images)
                           else " (shrunk to fit the budget)"))
        else:
            rows, best, front = self._cheap_answer(candidates, trials)
            measured = ("cheap figures only: the budget left no time to measure the candidates "
                        "in full" if candidates else "no candidate")
        bounds = {c.text: c.bound(self.baseline) for c in cfg.constraints}
        result = TuneResult(cfg, trials, rows, best, front, self._elapsed(), space.describe(), bounds,
                            measured=measured)
        (self.out / TUNE_FILE).write_text(json.dumps(result.as_dict(), indent=1) + "\n", encoding="utf-8")
        return result

    def _enough(self, study: Any) -> bool:
        if self.config.max_trials is None:
            return False
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
        return len(done) >= self.config.max_trials

    def _study(self) -> Any:
        import optuna

        cfg = self.config
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = cfg.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"
        if cfg.constraints:
            # group: a strategy's parameters exist only when it is on (a conditional space)
            sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=8, multivariate=True,
                                                 group=True)
            directions = ["minimize"]
        else:
            sampler = optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=16)
            directions = ["minimize", *self._quality_directions()]
        return optuna.create_study(storage=storage, study_name=cfg.study_name, sampler=sampler,
                                   directions=directions, load_if_exists=True)

    def _quality_directions(self) -> list[str]:
        from bench.quality.base import METRICS

        return ["maximize" if METRICS[m].higher_is_better else "minimize" for m in self._quality_objectives()]

    def _quality_objectives(self) -> list[str]:
        """Quality metrics of a multi-objective search: fidelity, and adherence and FID on the
        embedded models (the only ones with a domain classifier and real images)."""
        embedded = not self.config.model.startswith(("hf:", "arch:"))
        return ["psnr", "adherence", "fid"] if embedded else ["psnr"]

    def _check_objective(self, record: dict[str, Any]) -> None:
        if self.config.objective == "energy" and (record.get("energy") or {}).get("j_per_image") is None:
            why = (record.get("energy") or {}).get("reason", "no energy reading")
            raise TuneError(f"--objective energy: energy cannot be measured here ({why}); "
                            "use --objective latency or memory")

    def _ask(self, study: Any, space: Any, **attrs: Any) -> tuple[Any, str] | None:
        """A new trial and its stack spec; None (the trial closed as ``PRUNED`` with the
        reason) when its proposal cannot be stacked or run on the device."""
        from bench import search_space

        trial = study.ask()
        try:
            spec = search_space.propose(trial, space)
        except search_space.Incompatible as exc:
            trial.set_user_attr("reason", str(exc))
            study.tell(trial, state=state("PRUNED"))
            self.log(f"trial {trial.number}: rejected before measuring: {exc}")
            return None
        trial.set_user_attr("stack", spec)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        return trial, spec

    def _batch(self, study: Any, space: Any) -> None:
        asked = [a for a in (self._ask(study, space) for _ in range(self.config.workers)) if a]
        if not asked:
            return
        limit = self._prune_limit(study)
        records = self._measure([s for _, s in asked], prune_slower_than=limit)
        self._tell_all(study, asked, records)

    def _tell_all(self, study: Any, asked: list[tuple[Any, str]], records: dict[str, dict[str, Any]],
                  baseline: dict[str, Any] | None = None) -> None:
        """Tell Optuna how each asked trial went, from its record (constraints judged against
        ``baseline``, the tune's own by default)."""
        for trial, spec in asked:
            record = records.get(spec)
            if record is not None and record.get("status") == "pruned":
                self._tell_pruned(study, trial, spec, record)
                continue
            if record is None or record.get("status") != "ok":
                why = (record or {}).get("error") or "no record"
                trial.set_user_attr("reason", str(why)[:500])
                study.tell(trial, state=state("FAIL"))
                self.log(f"trial {trial.number}: {spec}: {(record or {}).get('status', 'failed')}: {str(why)[:120]}")
                continue
            values, constraints, summary = self._evaluate(record, baseline)
            trial.set_user_attr("constraints", constraints)
            for c, v in zip(self.config.constraints, constraints, strict=True):
                trial.set_constraint(c.text, v)  # the sampler's constraint handling reads these
            for k, v in summary.items():
                trial.set_user_attr(k, v)
            study.tell(trial, values if len(values) > 1 else values[0])
            feasible = all(c <= 0 for c in constraints)
            self.log(f"trial {trial.number}: {spec}: {summary['speedup'] or 0:.2f}x"
                     + ("" if not constraints else (", feasible" if feasible else ", infeasible")))

    def _prune_limit(self, study: Any) -> float | None:
        """The slowdown beyond which a trial is stopped: the best speedup found so far, at
        least :data:`MIN_PRUNE_SLOWDOWN`; None before any trial has been measured (and for a
        multi-objective search, where a slow stack may still be on the front)."""
        if not self.config.constraints or self.config.objective != "latency":
            return None
        best = [t.user_attrs.get("speedup") for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE"]
        best = [b for b in best if b]
        return max(MIN_PRUNE_SLOWDOWN, *best) if best else None

    def _tell_pruned(self, study: Any, trial: Any, spec: str, record: dict[str, Any]) -> None:
        """Report a pruned trial's last ratio to Optuna and close it as ``PRUNED``."""
        timing = record.get("timing") or {}
        ref = (record.get("reference") or {}).get("latencies_s") or []
        lat = timing.get("latencies_s") or []
        if lat and ref:
            ratio = sorted(lat)[len(lat) // 2] / sorted(ref)[len(ref) // 2]
            trial.report(ratio, step=len(lat))  # latency relative to the baseline
            trial.set_user_attr("speedup", 1 / ratio)
        trial.set_user_attr("reason", str(record.get("error"))[:500])
        study.tell(trial, state=state("PRUNED"))
        self.log(f"trial {trial.number}: {spec}: {record.get('error')}")

    def _measure(self, stacks: Sequence[str], prune_slower_than: float | None = None) -> dict[str, dict[str, Any]]:
        """One sweep batch: each stack a job (interleaved with its own baseline); records by
        canonical stack spec. Jobs already recorded in the folder are not measured again.
        A job is cut at what is left of the budget after the smallest final measurement."""
        from bench import sweep
        from bench.executors import driver, make_executor

        cfg = self.config
        final = self._smallest_final_s() if self.baseline else 0.0
        remaining = max(30.0, self._left() - final)
        timing: dict[str, Any] = {"warmup": WARMUP, "min_iterations": cfg.cheap_iterations,
                                  "min_seconds": 0, "max_iterations": cfg.cheap_iterations}
        if prune_slower_than:
            timing["prune_slower_than"] = prune_slower_than
        spec = sweep.SweepSpec(
            name=cfg.study_name, out_dir=self.out, models=(cfg.model,),
            strategies=tuple(s for s in stacks if s != "baseline"),
            settings=(sweep.Settings(device=cfg.device, batch_size=cfg.batch_size),),
            timing=timing,
            quality={}, quality_images=cfg.cheap_quality_images, timeout_s=remaining,
            workers=cfg.workers, threads=cfg.threads, sys_path=(os.getcwd(),),
        )
        plan = sweep.validate(spec, check_devices=cfg.executor == "local")
        executor = make_executor(cfg.executor, workers=cfg.workers, threads=cfg.threads,
                                 address=cfg.address)
        result = driver.run_plan(plan, executor)
        return {job.strategy: result.records[job.id] for job in plan.jobs if job.id in result.records}

    def _evaluate(self, record: dict[str, Any], baseline: dict[str, Any] | None = None
                  ) -> tuple[list[float], list[float], dict[str, Any]]:
        """The trial's objective values, constraint violations and a summary for the table."""
        stats = record.get("stats") or {}
        sp = number((stats.get("speedup") or {}).get("ratio")) if record["strategy"] != "baseline" else 1.0
        quality = {k: number(v) for k, v in (record.get("quality") or {}).items()}
        objective = self._objective(record, sp)
        values = [objective]
        if not self.config.constraints:
            from bench.quality.base import METRICS

            for m in self._quality_objectives():
                v = quality.get(m)
                bad = -_WORST if METRICS[m].higher_is_better else _WORST
                values.append(bad if v is None or not math.isfinite(v) else v)
        base = baseline or self.baseline
        constraints = [c.violation(quality.get(c.metric), c.bound(base)) for c in self.config.constraints]
        cold = record.get("cold") or {}
        summary = {"speedup": sp, "verdict": (stats.get("speedup") or {}).get("verdict"),
                   "quality": {k: v for k, v in quality.items() if v is not None},
                   "training_s": number(cold.get("training_s")),
                   "job_id": (record.get("sweep") or {}).get("job_id")}
        return values, constraints, summary

    def _objective(self, record: dict[str, Any], speedup: float | None) -> float:
        """Latency relative to the baseline the trial was timed against (1 / speedup), or
        energy (J) or peak memory (MiB) per image."""
        if self.config.objective == "latency":
            return 1 / speedup if speedup else _WORST
        if self.config.objective == "energy":
            return number((record.get("energy") or {}).get("j_per_image")) or _WORST
        return number((record.get("memory") or {}).get("peak_mb")) or _WORST

    # -- results ---------------------------------------------------------------------------
    def _trials(self, study: Any) -> list[Trial]:
        out = []
        for t in study.get_trials(deepcopy=False):
            attrs = t.user_attrs
            constraints = attrs.get("constraints")
            out.append(Trial(
                number=t.number, stack=attrs.get("stack", "?"), state=t.state.name.lower(),
                objective=t.values[0] if t.values else None, values=list(t.values or []),
                quality=attrs.get("quality") or {},
                feasible=None if constraints is None or not self.config.constraints
                else all(c <= 0 for c in constraints),
                speedup=attrs.get("speedup"), training_s=attrs.get("training_s"),
                job_id=attrs.get("job_id"), reason=attrs.get("reason"),
            ))
        return out

    def _candidates(self, study: Any, trials: list[Trial]) -> list[str]:
        """The stacks measured in full: the best feasible trials (or the Pareto front)."""
        done = [t for t in trials if t.state == "complete" and t.stack not in ("?", "baseline")]
        if self.config.constraints:
            pool = sorted((t for t in done if t.feasible), key=lambda t: t.objective)
        else:
            front = {t.number for t in study.best_trials}
            pool = sorted((t for t in done if t.number in front), key=lambda t: t.objective)
        out: list[str] = []
        for t in pool:
            if t.stack not in out:
                out.append(t.stack)
        limit = self.config.promote if self.config.constraints else 2 * self.config.promote
        return out[:limit]

    def _full(self, candidates: list[str], n: int, images: int, speedups: list[float]) -> list[dict[str, Any]]:
        """The candidates and the baseline in one interleaved engine run of ``n`` rounds and
        ``images`` quality images (``speedups``: the trials', for the time estimate)."""
        from bench.config import RunConfig, TimingConfig
        from bench.engine import Engine

        cfg = self.config
        self.log(f"full measurement of {len(candidates)} candidate(s), interleaved, {n} rounds, "
                 f"{images} quality images (about {self._final_s(speedups, n, images) / 60:.1f} "
                 f"min at most; {self._left() / 60:.1f} min left): {', '.join(candidates)}")
        config = RunConfig(
            model=cfg.model, strategies=("baseline", *candidates), device=cfg.device,
            batch_size=cfg.batch_size, timing=TimingConfig(warmup=WARMUP, min_iterations=n, min_seconds=0,
                                                           max_iterations=n),
            quality_images=images, out_dir=self.out / "final", threads=cfg.threads,
            schedule="interleaved",
        )
        return Engine(config, log=self.log, show_progress=False).run().records

    def _answer(self, final: list[dict[str, Any]]):
        """Every candidate's full figures, the best stack under the constraints (at full
        fidelity) and the Pareto front."""
        from bench.summary import run_verdicts

        base = next((r for r in final if r["strategy"] == "baseline"), None)
        words = run_verdicts(final)  # the candidates together: false discovery rate held
        rows = []
        for r in final:
            if r.get("status") != "ok" or r["strategy"] == "baseline":
                continue
            sp = (r.get("stats") or {}).get("speedup") or {}
            quality = {k: number(v) for k, v in (r.get("quality") or {}).items()}
            checks = {c.text: c.violation(quality.get(c.metric), c.bound(base)) <= 0
                      for c in self.config.constraints}
            rows.append({
                "stack": r["strategy"], "speedup": number(sp.get("ratio")),
                "ci_low": number(sp.get("ci_low")), "ci_high": number(sp.get("ci_high")),
                "significant": sp.get("significant"), "verdict": words.get(r["strategy"]),
                "objective": self._objective(r, number(sp.get("ratio"))),
                "quality": quality, "constraints": checks, "feasible": all(checks.values()),
                "training_s": number((r.get("cold") or {}).get("training_s")),
                "break_even_images": number((r.get("cold") or {}).get("break_even_images")),
            })
        feasible = [r for r in rows if r["feasible"]]
        best = min(feasible, key=lambda r: r["objective"]) if feasible else None
        return rows, best, _front(rows, self._quality_objectives())

    def _cheap_answer(self, candidates: list[str], trials: list[Trial]):
        """The candidates' figures from their trials alone (no time was left to measure them
        in full), each row saying so."""
        by_stack = {t.stack: t for t in trials if t.state == "complete"}
        rows = []
        for stack in candidates:
            t = by_stack[stack]
            rows.append({
                "stack": stack, "speedup": t.speedup, "ci_low": None, "ci_high": None,
                "significant": None, "verdict": None, "objective": t.objective,
                "quality": dict(t.quality), "constraints": {}, "feasible": t.feasible,
                "training_s": t.training_s, "break_even_images": None,
                "measured": "cheap trial only",
            })
        feasible = [r for r in rows if r["feasible"] is not False]
        best = min(feasible, key=lambda r: r["objective"]) if feasible else None
        return rows, best, _front(rows, self._quality_objectives())


def _front(rows: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """Rows not dominated on (objective, each quality metric), by :mod:`reports.pareto`: a
    row missing a metric (None or NaN) is worst, never on the front."""
    from bench.quality.base import METRICS
    from reports.pareto import pareto_mask

    if not rows:
        return []
    points = [[number(r["objective"]) if number(r["objective"]) is not None else math.nan,
               *(number(r["quality"].get(m)) if number(r["quality"].get(m)) is not None else math.nan
                 for m in metrics)] for r in rows]
    mask = pareto_mask(points, [False, *(METRICS[m].higher_is_better for m in metrics)])
    return sorted((r for r, on in zip(rows, mask, strict=True) if on), key=lambda r: r["objective"])


def run(config: TuneConfig, log: Callable[[str], None] | None = None) -> TuneResult:
    """Run a search; see :class:`Tuner`."""
    return Tuner(config, log=log).run()


__all__ = ["OBJECTIVES", "Constraint", "Trial", "TuneConfig", "TuneError", "TuneResult", "Tuner",
           "parse_budget", "run"]
