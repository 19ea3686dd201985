"""The one measurement engine: load -> set steps -> supports/apply -> warm-up -> timed calls
under a schedule -> quality -> record.

Every front end builds a :class:`~bench.core.config.RunConfig` and calls :class:`Engine`:
``accelbench run``, the CI gate's measurement, sweep jobs, code-against-code runs, the pytest
plugin and the search. None of them re-implements a step.

One run:

1. Parse every stack (bad specs fail before anything loads); stacks a device cannot run and
   stacks the model does not support become records with the reason. A run whose every
   requested stack is refused stops here, with the reasons, before it spends time on the
   baseline.
2. Load the model once (``load_s``), set the step count and resolution, generate the
   reference's quality images (cached on disk by weights, prompts, seeds, settings and code).
3. Choose the schedule (:mod:`bench.measure.schedules`): interleaved when every stack fits in memory
   at once (estimated from the model's bytes against free host or device memory, with a
   margin), else sequential; the record says which and why.
4. Apply each stack to its own copy (``apply_s``; training strategies report their one-off
   cost), warm them up (a stack with fewer than the protocol's two warm-up calls gets a
   caveat), time them under the schedule while one sampler runs across the window; each
   sample belongs to the stack whose call was running. On CUDA the allocator's peak is reset
   before each block of a stack and read after.
5. Per stack: speedup over the reference (paired by round when interleaved), memory and
   energy of its own calls, parameters and FLOPs per step or token, decoding counts, the
   machine's load, quality of its images against the reference's (fidelity, adherence,
   FID/KID with their noise floor), cold costs, then one :class:`~bench.core.record.Record`.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.core import stats
from bench.core.config import RunConfig
from bench.core.errors import EngineError
from bench.core.formats import sanitize
from bench.core.record import REFERENCE, Record
from bench.measure import footprint, machine, schedules
from bench.measure.arms import LocalArm
from bench.measure.assemble import (
    DECODING_STATS,
    GRID_IMAGES,
    RecordAssembly,
    RunResult,
    _Context,
    _failure,
    _machine_cores,
    _Measured,
    _torch_threads,
    _Writer,
)
from bench.measure.code_against_code import (
    CodeAgainstCode,
    apply_call_settings,
)
from bench.measure.probe import Probe
from bench.measure.samplers import make_sampler
from bench.measure.schedules import Hooks, Schedule, Sequential
from bench.models import sharing
from bench.models.base import ModelSpec
from bench.models.registry import dtype_name, load_model
from bench.models.sharing import weight_bytes
from strategies import StrategyError, parse_stack

Log = Callable[[str], None]





def plan_stacks(specs: Sequence[str], device: str, measure_reference: bool = True):
    """Parse every spec (raising on bad ones), reference first and once, duplicates dropped.

    Returns (stacks, refused): ``refused`` maps a canonical spec to why ``device`` cannot run
    it.
    """

    stacks = [parse_stack(s) for s in specs]
    ordered = []
    if measure_reference:
        ordered.append(next((s for s in stacks if s.is_baseline), None) or parse_stack(REFERENCE))
    seen = {s.spec for s in ordered}
    for s in stacks:
        if s.spec not in seen:
            seen.add(s.spec)
            ordered.append(s)
    refused: dict[str, str] = {}
    for stack in ordered:
        for s in stack:
            reason = s.supports_device(device)
            if reason:
                refused[stack.spec] = f"{s.spec} cannot run on {device}: {reason}"
                break
    return ordered, refused




class Engine(RecordAssembly, CodeAgainstCode):
    """Runs one :class:`~bench.core.config.RunConfig` and writes its run directory.

    Args:
        config: the run.
        log: told each step in one line (None: silent).
        show_progress: progress bars on long work.
        schedule: a schedule to use instead of the configured one (the pytest plugin's).
        keep_images: keep every stack's quality images in :attr:`RunResult.images`.
    """

    def __init__(self, config: RunConfig, log: Log | None = None, show_progress: bool = True,
                 schedule: Schedule | None = None, keep_images: bool = False) -> None:
        self.config = config
        self.keep_images = keep_images
        self.images: dict[str, Any] = {}
        self.fingerprint: str | None = None
        self.log = log or (lambda msg: None)
        self.show_progress = show_progress
        self.forced_schedule = schedule
        self.run_id = uuid.uuid4().hex[:12]
        self.out = Path(config.out_dir)
        self._suite: Any = None
        self._environment: dict[str, Any] | None = None
        self._schedule: tuple[Schedule, str] | None = None
        self._machine_probe: Any = None
        #: The dtype the model was loaded in (``fp32``, ``bf16``, ``fp16``).
        self.load_dtype: str | None = None

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Measure every stack; returns the records (also appended to ``results.jsonl``)."""
        cfg = self.config
        stacks, refused = plan_stacks(cfg.strategies, cfg.device, cfg.measure_reference)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._check_requested(stacks, refused)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.baseline_src is not None:
            return self._run_code_against_code(stacks, refused)
        with footprint.frozen_heap():  # the libraries' objects: not re-scanned by each gc
            return self._run_local(stacks, refused)

    def _check_requested(self, stacks, refused: dict[str, str], unsupported: dict[str, str] | None = None) -> None:
        requested = [s.spec for s in stacks if not s.is_baseline] or [s.spec for s in stacks]
        reasons = {**refused, **(unsupported or {})}
        if requested and all(spec in reasons for spec in requested):
            lines = "\n".join(f"  {spec}: {reasons[spec]}" for spec in requested)
            raise EngineError(f"no requested stack can run on {self.config.model}:\n{lines}")

    def _run_local(self, stacks, refused: dict[str, str]) -> RunResult:
        base, load_s = self._load()
        cfg = self.config = self.config.for_model(base)
        unsupported = dict(refused)
        same: dict[str, str] = {}
        for stack in stacks:
            if stack.spec in unsupported:
                continue
            reason = next((f"{s.spec}: {r}" for s in stack if (r := s.supports(base))), None)
            if reason:
                unsupported[stack.spec] = reason
            elif not stack.is_baseline:
                reasons = [s.same_as_baseline(base) for s in stack]
                if all(reasons):
                    same[stack.spec] = "same as baseline: " + "; ".join(reasons)
        self._check_requested(stacks, refused, {**unsupported, **same})
        for spec, reason in unsupported.items():
            self.log(f"[{spec}] not applicable: {reason}")
        for spec, reason in same.items():
            self.log(f"[{spec}] not timed: {reason}")
        load = machine.start(torch_threads=_torch_threads())
        timed_prompts, _ = base.prompts(cfg.batch_size)
        timed_seeds = [cfg.seed + i for i in range(cfg.batch_size)]
        q_prompts, q_labels = base.prompts(cfg.quality_images)
        q_seeds = [cfg.seed + i for i in range(cfg.quality_images)]
        reference_images = self._reference_images(base, q_prompts, q_seeds)
        runnable = [s for s in stacks if s.spec not in unsupported and s.spec not in same]
        schedule, why = self._choose_schedule(base, runnable)
        self.log(f"schedule: {schedule.name} ({why})")
        ctx = _Context(base=base, load_s=load_s, timed=(timed_prompts, timed_seeds),
                       quality=(q_prompts, q_labels, q_seeds), reference_images=reference_images,
                       load=load, shared=sharing.storages(base), versions=sharing.versions(base))
        self._schedule = (schedule, why)
        records: dict[str, Record] = {}
        writer = _Writer(self, ctx)
        for stack in stacks:
            if stack.spec in unsupported or stack.spec in same:
                status = "unsupported" if stack.spec in unsupported else "same"
                records[stack.spec] = self._record(base.describe(), stack, status,
                                                   unsupported.get(stack.spec) or same[stack.spec])
                writer.add(records[stack.spec])
        measured: list[_Measured] = []
        if schedule.all_at_once:
            arms = [self._prepare(stack, base, ctx, records, writer) for stack in runnable]
            live = [a for a in arms if a is not None]
            measured = self._time(schedule, live, ctx)
            reference = next((m for m in measured if m.arm.label == REFERENCE), None)
            for m in measured:
                records[m.arm.label] = self._finish(m, reference if cfg.measure_reference else None,
                                                    ctx, schedule)
                writer.add(records[m.arm.label])
                m.arm.close()
                footprint.release_memory(cfg.device)
        else:
            reference: _Measured | None = None
            for stack in runnable:
                arm = self._prepare(stack, base, ctx, records, writer)
                if arm is None:
                    continue
                m = self._time(schedule, [arm], ctx)[0]
                if reference is None and cfg.measure_reference and arm.label == REFERENCE:
                    reference = m
                records[arm.label] = self._finish(m, reference, ctx, schedule)
                writer.add(records[arm.label])
                measured.append(m)
                arm.close()  # the reference keeps its timings, not its model
                footprint.release_memory(cfg.device)
        self._check_shared(ctx)
        drift = None
        reference = next((m for m in measured if m.arm.label == REFERENCE), None)
        if (not schedule.all_at_once and cfg.recheck_baseline and len(measured) > 1
                and reference is not None and reference.timing.latencies_s):
            drift = self._recheck(reference, base, ctx)
        load = writer.final_load()
        ordered = [records[s.spec] for s in stacks if s.spec in records]
        writer.flush()
        result = RunResult(self.out, [writer.written[id(r)] for r in ordered],
                           schedule=self._schedule_info(), load=load.as_dict(), drift=drift,
                           images=self.images)
        result.warnings = self._warnings(load, drift)
        self._write_run_json(result)
        return result

    def _probe(self) -> Any:
        """The run's machine-speed probe (one per run, its samples kept across schedules)."""
        if self._machine_probe is None:
            self._machine_probe = Probe(self.config.device)
        return self._machine_probe

    def _schedule_info(self) -> dict[str, Any]:
        """The run's schedule as it stands, with why it was chosen."""
        schedule, why = self._schedule
        return schedule.describe() | {"reason": why}

    def _check_shared(self, ctx: _Context) -> None:
        """Refuse a run in which something wrote into the loaded model's shared weights: every
        stack's figures would then rest on changed weights."""
        changed = sharing.written_in_place(ctx.versions)
        if changed:
            raise EngineError(
                f"{len(changed)} weight tensor(s) of the loaded model were written in place during "
                f"the run (e.g. {', '.join(changed[:3])}): a strategy changed weights it shares "
                "with the other stacks instead of rebinding its own. Its figures and the others' "
                "cannot be trusted; run the stacks one at a time to find it"
            )

    # -- steps -----------------------------------------------------------------------------
    def _load(self):
        cfg = self.config
        self.log(f"loading {cfg.model} on {cfg.device}")
        t0 = time.perf_counter()
        base = load_model(ModelSpec(cfg.model, device=cfg.device,
                                    trust_remote_code=cfg.trust_remote_code,
                                    allow_download=cfg.allow_download, dtype=cfg.dtype))
        load_s = time.perf_counter() - t0
        self.load_dtype = dtype_name(base.dtype)
        apply_call_settings(base, cfg)
        self.fingerprint = base.fingerprint()  # after the steps and resolution are set
        return base, load_s

    def _choose_schedule(self, base, stacks) -> tuple[Schedule, str]:
        cfg = self.config
        n_arms = len(stacks)
        if self.forced_schedule is not None:
            return self.forced_schedule, "set by the caller"
        if cfg.schedule != "auto":
            return schedules.make(cfg.schedule, cfg.block), f"--schedule {cfg.schedule}"
        if n_arms <= 1:
            return schedules.make("sequential"), "one stack: nothing to alternate with"
        size = weight_bytes(base)
        added = sum(s.added_weight_bytes(base) for stack in stacks for s in stack)
        fits, words = machine.fits_at_once(size, added, n_arms, machine.free_bytes(cfg.device))
        if fits:
            return schedules.make("interleaved", cfg.block), f"all {n_arms} stacks fit in memory at once: {words}"
        return schedules.make("sequential"), f"the stacks do not fit in memory at once: {words}"

    def _prepare(self, stack, base, ctx: _Context, records: dict[str, Record],
                 writer: _Writer) -> Any:
        """Apply ``stack`` to a copy of the model that shares its weights; None (and a record
        saying why, written at once) if it cannot be applied. A stack that fails, or runs
        out of memory, frees what it built; the run goes on."""
        self.log(f"[{stack.spec}] applying")
        failed: Record | None = None
        try:
            t0 = time.perf_counter()
            model = stack.apply(base.clone(share_weights=True))
            apply_s = time.perf_counter() - t0
        except StrategyError as exc:
            failed = self._record(base.describe(), stack, "unsupported", str(exc))
            self.log(f"[{stack.spec}] not applicable: {exc}")
        except Exception as exc:  # one failing stack must not end the run
            failed = self._record(base.describe(), stack, "failed", _failure(exc))
            failed.traceback = traceback.format_exc()
            self.log(f"[{stack.spec}] failed: {_failure(exc)}")
        if failed is not None:
            records[stack.spec] = failed
            writer.add(failed)
            footprint.release_memory(self.config.device)
        self._check_shared(ctx)
        if failed is not None:
            return None
        prompts, seeds = ctx.timed
        return LocalArm(stack.spec, model, prompts, seeds,
                        info={"apply_s": apply_s, "stack": stack.config(), "strategies": list(stack)})

    def _time(self, schedule: Schedule, arms: list[Any], ctx: _Context) -> list[_Measured]:
        """Run ``schedule`` over ``arms`` with the sampler across it; attribute the samples."""

        cfg = self.config
        if not arms:
            return []
        gpus = sorted({g for a in arms if a.local for g in _model_gpus(a.model, cfg.device)})
        peaks: dict[int, float] = {}

        def before(i: int) -> None:
            for g in gpus:
                torch.cuda.reset_peak_memory_stats(g)

        def after(i: int) -> None:
            if gpus:
                peak = sum(torch.cuda.max_memory_allocated(g) for g in gpus) / 2**20
                peaks[i] = max(peaks.get(i, 0.0), peak)

        label = arms[0].label if len(arms) == 1 else f"{len(arms)} stacks, {schedule.name}"
        unit = "round" if schedule.name == "interleaved" else "call"
        bar = tqdm(desc=f"timing {label[:40]}", unit=unit, disable=not self.show_progress, leave=False)
        def failed(i: int, why: str) -> None:  # free a failed stack's memory now, not at the end
            arm = arms[i]
            if arm.local and arm.model is not None:
                what = why if why.startswith("pruned") else "failed while timed"
                self.log(f"[{arm.label}] {what}; its memory is freed, the run goes on")
                arm.info.setdefault("describe", arm.model.describe())
                arm.close()
                footprint.release_memory(cfg.device)

        local = any(a.local for a in arms)
        probe = self._probe() if local else None
        hooks = Hooks(before_block=before, after_block=after, failed=failed,
                      round_end=probe.run if probe is not None else None,
                      progress=lambda msg: (bar.set_postfix_str(msg), bar.update(1)))
        sampler = make_sampler(cfg.device, cfg.sample_interval_s, gpus=gpus or None)
        try:
            with sampler:
                timings = schedule.run(arms, cfg.timing, hooks)
        finally:
            bar.close()
        out = []
        for i, (arm, timing) in enumerate(zip(arms, timings, strict=True)):
            result = None
            if timing.latencies_s:
                images = len(timing.latencies_s) * len(arm.prompts if arm.local else ctx.timed[0])
                result = sampler.result(window=timing.bounds, images=images, bounds=timing.bounds)
                if arm.local:  # a worker's own work would count as "other processes" here
                    ctx.other_cores.append(machine.other_cores(result.series, _machine_cores(),
                                                               timing.bounds))
            out.append(_Measured(arm, timing, result, peaks.get(i), shared=len(arms) > 1))
        return out










    def _recheck(self, reference: _Measured, base, ctx: _Context) -> dict[str, Any]:
        """Sequential runs: time the reference again after every stack (on a fresh arm over
        the shared weights: the first one was freed). If the machine's speed drifted meanwhile
        (other load, throttling), every speedup is off by as much."""
        self.log("[baseline] timing again to check for drift")
        arm = LocalArm(REFERENCE, base.clone(share_weights=True), *ctx.timed)
        try:
            again = Sequential().run([arm], self.config.timing)[0]
        finally:
            arm.close()
        if not again.latencies_s:
            return {"error": again.error or "no timed call"}
        first = stats.summarize(reference.timing.latencies_s).median
        last = stats.summarize(again.latencies_s).median
        return {"first_ms": first * 1000, "last_ms": last * 1000, "ratio": last / first,
                "p_value": stats.mann_whitney_p(reference.timing.latencies_s, again.latencies_s),
                "latencies_s": again.latencies_s}

    # -- code against code -----------------------------------------------------------------


    # -- records and files -----------------------------------------------------------------





    def _write_run_json(self, result: RunResult) -> None:
        summary = {"run_id": self.run_id, "schedule": result.schedule, "load": result.load,
                   "baseline_drift": result.drift, "warnings": result.warnings}
        (self.out / "run.json").write_text(json.dumps(sanitize(summary), indent=1, default=str))












#: Call arguments both sides of code against code must run with (the step count is passed to
#: workers by every tree, and a stack may change it: steps:n=4).










def _model_gpus(model: Any, device: str) -> list[int]:
    """CUDA ordinals holding any of the model's weights, plus the run's device."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return []
    found = {dev.index if dev.index is not None else torch.cuda.current_device()}
    try:
        for module in model.components().values():
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.device.type == "cuda":
                    found.add(tensor.device.index or 0)
    except Exception:  # noqa: BLE001 - an exotic component: the run's device is still sampled
        pass
    return sorted(found)


def run(config: RunConfig, log: Log | None = None, show_progress: bool = True) -> RunResult:
    """Run ``config`` with the engine and return what it measured."""
    return Engine(config, log=log, show_progress=show_progress).run()


__all__ = ["DECODING_STATS", "GRID_IMAGES", "REFERENCE", "Engine", "EngineError", "RunResult",
           "plan_stacks", "run"]
