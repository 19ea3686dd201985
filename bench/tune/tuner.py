"""The tuner: screening, then Optuna trials measured by the engine, then the final
measurement of the best candidates at full size."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import sweep
from bench.core import lock
from bench.core.config import RunConfig, TimingConfig
from bench.core.errors import TuneError
from bench.core.formats import number
from bench.core.metrics import METRICS
from bench.core.pareto import pareto_mask
from bench.core.record import REFERENCE, Record, Speedup
from bench.core.summary import run_verdicts
from bench.measure.engine import Engine
from bench.models import load_model
from bench.models.base import ModelSpec
from bench.sweep.executors import driver, make_executor
from bench.tune import search_space
from bench.tune.budget import WARMUP, Budget
from bench.tune.config import (
    _WORST,
    LOCK_FILE,
    MIN_PRUNE_SLOWDOWN,
    TUNE_FILE,
    Trial,
    TuneConfig,
    TuneResult,
    violation,
)
from bench.tune.screening import Screening, state


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
        lock_fd = lock.acquire(self.out, LOCK_FILE, lambda holder: TuneError(
            f"another accelbench tune (pid {holder}) is running in {self.out}"))
        try:
            return self._run()
        finally:
            os.close(lock_fd)

    def _run(self) -> TuneResult:
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
        self.baseline = self._measure([REFERENCE])[REFERENCE]
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
        return ["maximize" if METRICS[m].higher_is_better else "minimize" for m in self._quality_objectives()]

    def _quality_objectives(self) -> list[str]:
        """Quality metrics of a multi-objective search: fidelity, and adherence and FID on the
        embedded models (the only ones with a domain classifier and real images)."""
        embedded = not self.config.model.startswith(("hf:", "arch:"))
        return ["psnr", "adherence", "fid"] if embedded else ["psnr"]

    def _check_objective(self, record: dict[str, Any]) -> None:
        rec = Record.from_dict(record)
        if self.config.objective == "energy" and rec.energy_j_per_image is None:
            why = (rec.energy or {}).get("reason", "no energy reading")
            raise TuneError(f"--objective energy: energy cannot be measured here ({why}); "
                            "use --objective latency or memory")

    def _ask(self, study: Any, space: Any, **attrs: Any) -> tuple[Any, str] | None:
        """A new trial and its stack spec; None (the trial closed as ``PRUNED`` with the
        reason) when its proposal cannot be stacked or run on the device."""

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
        rec = Record.from_dict(record)
        ref = (rec.reference or {}).get("latencies_s") or []
        lat = rec.calls.latencies_s
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

        cfg = self.config
        final = self._smallest_final_s() if self.baseline else 0.0
        remaining = max(30.0, self._left() - final)
        timing: dict[str, Any] = {"warmup": WARMUP, "min_iterations": cfg.cheap_iterations,
                                  "min_seconds": 0, "max_iterations": cfg.cheap_iterations}
        if prune_slower_than:
            timing["prune_slower_than"] = prune_slower_than
        spec = sweep.SweepSpec(
            name=cfg.study_name, out_dir=self.out, models=(cfg.model,),
            strategies=tuple(s for s in stacks if s != REFERENCE),
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
        rec = Record.from_dict(record)
        speedup = rec.speedup or Speedup(None)
        sp = speedup.ratio if not rec.is_reference else 1.0
        quality = _measured(rec)
        objective = self._objective(rec, sp)
        values = [objective]
        if not self.config.constraints:
            for m in self._quality_objectives():
                v = quality.get(m)
                bad = -_WORST if METRICS[m].higher_is_better else _WORST
                values.append(bad if v is None or not math.isfinite(v) else v)
        base = baseline or self.baseline
        constraints = [violation(c, quality.get(c.metric), c.bound(base)) for c in self.config.constraints]
        summary = {"speedup": sp, "verdict": speedup.verdict, "quality": quality,
                   "training_s": rec.cold_costs.get("training_s"),
                   "job_id": (rec.sweep or {}).get("job_id")}
        return values, constraints, summary

    def _objective(self, rec: Record, speedup: float | None) -> float:
        """Latency relative to the baseline the trial was timed against (1 / speedup), or
        energy (J) or peak memory (MiB) per image."""
        if self.config.objective == "latency":
            return 1 / speedup if speedup else _WORST
        if self.config.objective == "energy":
            return rec.energy_j_per_image or _WORST
        return rec.peak_memory_mb or _WORST

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
        done = [t for t in trials if t.state == "complete" and t.stack not in ("?", REFERENCE)]
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

        cfg = self.config
        self.log(f"full measurement of {len(candidates)} candidate(s), interleaved, {n} rounds, "
                 f"{images} quality images (about {self._final_s(speedups, n, images) / 60:.1f} "
                 f"min at most; {self._left() / 60:.1f} min left): {', '.join(candidates)}")
        config = RunConfig(
            model=cfg.model, strategies=(REFERENCE, *candidates), device=cfg.device,
            batch_size=cfg.batch_size, timing=TimingConfig(warmup=WARMUP, min_iterations=n, min_seconds=0,
                                                           max_iterations=n),
            quality_images=images, out_dir=self.out / "final", threads=cfg.threads,
            schedule="interleaved",
        )
        return Engine(config, log=self.log, show_progress=False).run().records

    def _answer(self, final: list[dict[str, Any]]):
        """Every candidate's full figures, the best stack under the constraints (at full
        fidelity) and the Pareto front."""

        base = next((r for r in final if r["strategy"] == REFERENCE), None)
        words = run_verdicts(final)  # the candidates together: false discovery rate held
        rows = []
        for rec in map(Record.from_dict, final):
            if not rec.ok or rec.is_reference:
                continue
            sp = rec.speedup or Speedup(None)
            quality = _measured(rec)
            checks = {c.text: c.holds(quality.get(c.metric), c.bound(base))
                      for c in self.config.constraints}
            rows.append({
                "stack": rec.strategy, "speedup": sp.ratio, "ci_low": sp.ci_low,
                "ci_high": sp.ci_high, "significant": sp.significant,
                "verdict": words.get(rec.strategy), "objective": self._objective(rec, sp.ratio),
                "quality": quality, "constraints": checks, "feasible": all(checks.values()),
                "training_s": rec.cold_costs.get("training_s"),
                "break_even_images": rec.cold_costs.get("break_even_images"),
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


def _measured(rec: Record) -> dict[str, float]:
    """The quality metrics a record measured (a metric recorded as missing left out)."""
    return {k: v for k, v in rec.scores.values.items() if (rec.quality or {}).get(k) is not None}


def _front(rows: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """Rows not dominated on (objective, each quality metric), by :mod:`bench.core.pareto`: a
    row missing a metric (None or NaN) is worst, never on the front."""

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


__all__ = ["Tuner", "run"]
