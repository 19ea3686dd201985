"""The one measurement engine: load -> set steps -> supports/apply -> warm-up -> timed calls
under a schedule -> quality -> record.

Every front end builds a :class:`~bench.config.RunConfig` and calls :class:`Engine`:
``accelbench run``, the CI gate's measurement, sweep jobs, code-against-code runs, the pytest
plugin and the search. None of them re-implements a step.

One run:

1. Parse every stack (bad specs fail before anything loads); stacks a device cannot run and
   stacks the model does not support become records with the reason. A run whose every
   requested stack is refused stops here, with the reasons, before it spends time on the
   baseline.
2. Load the model once (``load_s``), set the step count and resolution, generate the
   reference's quality images (cached on disk by weights, prompts, seeds, settings and code).
3. Choose the schedule (:mod:`bench.schedules`): interleaved when every stack fits in memory
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
   FID/KID with their noise floor), cold costs, then one :class:`~bench.record.Record`.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import compare, footprint, machine, stats
from bench.config import PROTOCOL_WARMUP, RunConfig, warmup_caveat
from bench.formats import sanitize, slug
from bench.harness import Timing
from bench.measures import energy_fields, median_step_ms, memory_fields, score_quality
from bench.record import Record
from bench.schedules import Hooks, Schedule

#: Images shown in each stack's grid (the first quality images: same prompts and seeds).
GRID_IMAGES = 20
#: The reference every other stack is compared with.
REFERENCE = "baseline"
#: Record keys copied from a token model's decoding counts into ``stats``.
DECODING_STATS = ("tokens_per_forward", "forward_passes_per_image", "acceptance_rate",
                  "token_acceptance")

Log = Callable[[str], None]


class EngineError(ValueError):
    """A run that cannot start (every requested stack refused, a bad setting); the message
    says why."""


@dataclass
class RunResult:
    """What a run measured.

    Attributes:
        out_dir: the run directory.
        records: the records of this code tree, the reference first.
        baseline_records: code against code: the other tree's records (``OUT/baseline``).
        schedule: the schedule and why it was chosen.
        load: the machine's load during the run.
        drift: sequential runs: the reference timed again at the end.
        warnings: what the summary should tell the user.
    """

    out_dir: Path
    records: list[dict[str, Any]]
    baseline_records: list[dict[str, Any]] = field(default_factory=list)
    schedule: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    #: The quality images of each stack, by spec (only when the engine was asked to keep them).
    images: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline_dir(self) -> Path:
        return self.out_dir / "baseline"


def plan_stacks(specs: Sequence[str], device: str, measure_reference: bool = True):
    """Parse every spec (raising on bad ones), reference first and once, duplicates dropped.

    Returns (stacks, refused): ``refused`` maps a canonical spec to why ``device`` cannot run
    it.
    """
    from strategies import parse_stack

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


def default_current_src() -> Path:
    """The tree the current side of a code-against-code run imports: the working directory's
    accelbench tree when there is one, else the installed package's."""
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / "bench" / "__init__.py").is_file() and (folder / "strategies").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


class Engine:
    """Runs one :class:`~bench.config.RunConfig` and writes its run directory.

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
        import torch

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._check_requested(stacks, refused)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.baseline_src is not None:
            return self._run_code_against_code(stacks, refused)
        return self._run_local(stacks, refused)

    def _check_requested(self, stacks, refused: dict[str, str], unsupported: dict[str, str] | None = None) -> None:
        requested = [s.spec for s in stacks if not s.is_baseline] or [s.spec for s in stacks]
        reasons = {**refused, **(unsupported or {})}
        if requested and all(spec in reasons for spec in requested):
            lines = "\n".join(f"  {spec}: {reasons[spec]}" for spec in requested)
            raise EngineError(f"no requested stack can run on {self.config.model}:\n{lines}")

    def _run_local(self, stacks, refused: dict[str, str]) -> RunResult:
        from bench.models import sharing

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
        from bench.probe import Probe

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
        from bench.models import sharing

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
        from bench.models.base import ModelSpec
        from bench.models.registry import dtype_name, load_model

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
        from bench import schedules
        from bench.models.sharing import weight_bytes

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
        from bench.arms import LocalArm
        from strategies import StrategyError

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
        import torch
        from tqdm.auto import tqdm

        from bench.samplers import make_sampler

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

    def _finish(self, m: _Measured, reference: _Measured | None, ctx: _Context,
                schedule: Schedule) -> Record:
        """The record of one measured arm: statistics, cold costs, memory, energy, size,
        decoding counts and quality."""
        arm, timing = m.arm, m.timing
        model = arm.model
        if model is None:  # failed (or pruned) while timed, and freed then
            status = "pruned" if timing.pruned else "failed"
            rec = self._record(arm.info.get("describe") or {"name": self.config.model}, None,
                               status, _failure_text(timing.error), spec=arm.label,
                               stack_config=arm.info.get("stack"))
            rec.schedule = schedule.describe()
            if timing.pruned:
                rec.timing = timing.as_dict()
            return rec
        rec = self._record(model.describe(), None, "ok", None, spec=arm.label,
                           stack_config=arm.info.get("stack"))
        rec.settings["dtype"] = str(model.dtype).replace("torch.", "")
        rec.settings["steps"] = model.steps
        rec.notes = json.loads(json.dumps(sanitize(model.notes), default=str))  # a snapshot
        rec.schedule = schedule.describe()
        if timing.error and not timing.latencies_s:
            rec.fail("failed", _failure_text(timing.error))
            return rec
        if not timing.latencies_s:
            rec.caveats.append("nothing was timed (the schedule ran no timed call)")
        try:
            self._fill_measurement(rec, m, reference, ctx, model.notes)
            self._fill_caveats(rec, arm)
            if self.config.count_flops:
                from bench import flops

                rec.model_size = flops.count(model, ctx.timed[0][0], ctx.timed[1][0]).as_dict()
            else:
                rec.model_size = {"params": model.parameter_count(), "method": "not counted"}
            q_prompts, q_labels, q_seeds = ctx.quality
            if q_prompts:
                images = (ctx.reference_images if arm.label == REFERENCE
                          else self._generate(arm, q_prompts, q_seeds, f"quality {arm.label}"))
                if self.keep_images:
                    self.images[arm.label] = images
                self._fill_quality(rec, ctx.base, images, ctx.reference_images, q_prompts, q_labels)
                rec.images = self._save_images(arm.label, images)
                rec.image_prompts = list(q_prompts[:GRID_IMAGES])
                rec.image_seeds = list(q_seeds[:GRID_IMAGES])
        except Exception as exc:  # the measurement is kept; the record says what failed
            rec.fail("failed", _failure(exc))
            rec.traceback = traceback.format_exc()
            self.log(f"[{arm.label}] failed: {_failure(exc)}")
        if timing.error:
            rec.caveats.append(f"stopped early: {timing.error}")
        return rec

    def _fill_measurement(self, rec: Record, m: _Measured, reference: _Measured | None,
                          ctx: _Context, notes: dict[str, Any]) -> None:
        """Timing, statistics, speedup, cold costs, decoding counts, memory and energy of one
        measured arm (``notes``: what its strategies recorded about themselves)."""
        cfg = self.config
        arm, timing = m.arm, m.timing
        b = cfg.batch_size
        rec.timing = timing.as_dict()
        cold = {"load_s": arm.info.get("load_s", ctx.load_s), "apply_s": arm.info.get("apply_s"),
                "first_call_s": timing.first_call_s, **(notes.get("cold") or {})}
        rec.cold = cold
        if timing.latencies_s and (caveat := warmup_caveat(len(timing.warmup_s))):
            rec.caveats.append(caveat)
        if not timing.latencies_s:
            reason = "nothing was timed"
            rec.memory = {"peak_mb": None, "reason": reason}
            rec.energy = {"energy_j": None, "j_per_image": None, "images_per_kwh": None,
                          "method": "unavailable", "reason": reason}
            return
        summary = stats.summarize([t * 1000 for t in timing.latencies_s])
        st: dict[str, Any] = {
            "latency_ms": summary.as_dict(),
            "ms_per_image": summary.median / b,
            "images_per_s": b / (summary.median / 1000),
            "step_ms_median": median_step_ms(timing),
        }
        if reference is not None and reference is not m and reference.timing.latencies_s:
            sp = compare.speedup(self._samples(reference.timing), self._samples(timing))
            if sp is not None:
                st["speedup"] = sp.as_dict()
        rec.stats = st
        self._fill_decoding(rec, notes)
        if cold.get("training_s") and reference is not None and reference.timing.latencies_s:
            base_per_img = stats.summarize(reference.timing.latencies_s).median / b
            saved = base_per_img - summary.median / 1000 / b
            cold["break_even_images"] = cold["training_s"] / saved if saved > 0 else None
        if m.result is not None:
            rec.sampler = m.result.as_dict()
            if arm.local:
                rec.series_file = self._save_series(arm.label, m.result, timing)
            own = None
            if arm.local:
                self.log(f"[{arm.label}] memory: one call alone")
                own = footprint.stack_memory(arm.model, ctx.shared, lambda: arm.call(None),
                                             cfg.device)
            rec.memory = memory_fields(m.result, m.cuda_peak_mb, local=arm.local,
                                       attributed=m.shared, stack=own)
            rec.energy = energy_fields(m.result)

    def _samples(self, timing: Timing) -> compare.Samples:
        return compare.Samples(latencies_s=timing.latencies_s, batch_size=self.config.batch_size,
                               rounds=timing.rounds, run_id=self.run_id)

    @staticmethod
    def _fill_decoding(rec: Record, notes: dict[str, Any]) -> None:
        """Token rates of models that generate tokens, and their decoding counts."""
        per_image = rec.model.get("tokens_per_image")
        if per_image and rec.stats:
            rec.stats["tokens_per_s"] = per_image * rec.stats["images_per_s"]
        decoding = dict(notes.get("decoding") or {})
        if decoding:
            rec.decoding = decoding
            for key in DECODING_STATS:
                if decoding.get(key) is not None and rec.stats is not None:
                    rec.stats[key] = decoding[key]

    def _fill_caveats(self, rec: Record, arm: Any) -> None:
        model = arm.model
        trained_for = getattr(model, "trained_for", None) or {}
        for s in arm.info.get("strategies", []):
            if s.name in trained_for:  # the model learned what this strategy needs
                rec.caveats.append(f"{s.name}: {trained_for[s.name]}")
        if not getattr(model, "random_weights", False):
            return
        for s in arm.info.get("strategies", []):
            if getattr(s, "depends_on_activations", False):
                rec.caveats.append(
                    f"speedup not representative: {s.spec} decides from the activations, and "
                    "random weights do not produce a real model's activations"
                )

    def _fill_quality(self, rec: Record, base, images, reference, prompts, labels) -> None:
        scored = score_quality(base, images, reference, labels, self._quality_suite(base), prompts)
        rec.quality = scored["quality"]
        rec.quality_meta = scored["quality_meta"]
        rec.quality_details = scored["quality_details"]
        rec.quality_noise_floor = self._quality_suite(base).noise_floor(len(images))

    def _quality_suite(self, base) -> Any:
        if self._suite is None:
            from bench.quality.suite import QualitySuite

            self._suite = QualitySuite(base, self.config.quality, hub=self.config.model.startswith("hf:"),
                                       use_cache=self.config.use_cache)
        return self._suite

    def _reference_images(self, base, prompts, seeds) -> Any:
        from bench import baseline_cache

        if not prompts:
            return None
        key = baseline_cache.key(base, prompts, seeds)
        if self.config.use_cache:
            cached = baseline_cache.get(key)
            if cached is not None:
                self.log("baseline images: from cache")
                return cached
        from bench.arms import LocalArm

        self.log(f"baseline images: generating {len(prompts)}")
        images = self._generate(LocalArm(REFERENCE, base, [], []), prompts, seeds, "baseline images")
        if self.config.use_cache:
            baseline_cache.put(key, images)
        return images

    def _generate(self, arm: Any, prompts, seeds, desc: str) -> Any:
        from tqdm.auto import tqdm

        batch = self.config.quality_batch_size or self.config.batch_size
        with tqdm(total=len(prompts), desc=desc, unit="img", disable=not self.show_progress,
                  leave=False) as bar:
            return arm.images(prompts, seeds, batch, progress=bar.update)

    def _recheck(self, reference: _Measured, base, ctx: _Context) -> dict[str, Any]:
        """Sequential runs: time the reference again after every stack (on a fresh arm over
        the shared weights: the first one was freed). If the machine's speed drifted meanwhile
        (other load, throttling), every speedup is off by as much."""
        from bench.arms import LocalArm
        from bench.schedules import Sequential

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
    def _run_code_against_code(self, stacks, refused: dict[str, str]) -> RunResult:
        from bench.arms import WorkerArm
        from bench.models import load_model
        from bench.models.base import ModelSpec
        from bench.schedules import Interleaved

        cfg = self.config
        current_src = Path(cfg.current_src) if cfg.current_src else default_current_src()
        t0 = time.perf_counter()
        base = load_model(ModelSpec(cfg.model, device=cfg.device, dtype=cfg.dtype,  # prompts, scoring
                                    trust_remote_code=cfg.trust_remote_code,
                                    allow_download=cfg.allow_download))
        load_s = time.perf_counter() - t0
        cfg = self.config = self.config.for_model(base)
        apply_call_settings(base, cfg)  # the same checks and settings as a local run
        timed_prompts, _ = base.prompts(cfg.batch_size)
        timed_seeds = [cfg.seed + i for i in range(cfg.batch_size)]
        q_prompts, q_labels = base.prompts(cfg.quality_images)
        q_seeds = [cfg.seed + i for i in range(cfg.quality_images)]
        load = machine.start(torch_threads=_torch_threads())
        arms: list[Any] = []
        records: dict[tuple[str, str], Record] = {}
        try:
            for side, src in (("current", current_src), ("baseline", Path(cfg.baseline_src))):
                for stack in stacks:
                    if stack.spec in refused:
                        records[(side, stack.spec)] = self._record(base.describe(), stack, "unsupported",
                                                                   refused[stack.spec])
                        continue
                    label = f"{side}:{stack.spec}"
                    self.log(f"[{label}] starting a worker in {src}")
                    arm = WorkerArm(label, src, side, {
                        "model": cfg.model, "device": cfg.device, "dtype": cfg.dtype,
                        "strategy": stack.spec,
                        "steps": cfg.steps, "threads": cfg.threads, "prompts": timed_prompts,
                        "seeds": timed_seeds,
                        "resolution": list(cfg.resolution) if cfg.resolution else None,
                        "trust_remote_code": cfg.trust_remote_code,
                        "allow_download": cfg.allow_download}, self.out / "workers")
                    if arm.status == "ok" and (why := _call_settings_differ(base, arm.info)):
                        arm.status, arm.error = "unsupported", why
                    if arm.status != "ok":
                        self.log(f"[{label}] not applicable: {arm.error}")
                        records[(side, stack.spec)] = self._record(
                            {"name": cfg.model}, stack, "unsupported", arm.error)
                        arm.close()
                        continue
                    arms.append(arm)
            schedule = Interleaved(cfg.block)
            self.log(f"interleaving {len(arms)} workers: {cfg.timing.min_iterations}+ rounds")
            ctx = _Context(base=base, load_s=load_s, timed=(timed_prompts, timed_seeds),
                           quality=(q_prompts, q_labels, q_seeds), reference_images=None, load=load)
            measured = self._time(schedule, arms, ctx)
            images: dict[str, Any] = {}
            for m in measured:
                if q_prompts and m.timing.latencies_s:
                    images[m.arm.label] = self._generate(m.arm, q_prompts, q_seeds, f"quality {m.arm.label}")
        finally:
            for a in arms:
                a.close()
        load = machine.finish(load, _mean_other(ctx.other_cores))
        result = RunResult(self.out, [], schedule=schedule.describe() | {
            "reason": "code against code is always interleaved",
            "sides": {"current": str(current_src), "baseline": str(Path(cfg.baseline_src).resolve())}},
            load=load.as_dict())
        for side in ("current", "baseline"):
            side_measured = [m for m in measured if m.arm.side == side]
            ref = next((m for m in side_measured if m.arm.spec == REFERENCE), None)
            ref_images = images.get(ref.arm.label) if ref is not None else None
            for m in side_measured:
                records[(side, m.arm.spec)] = self._worker_record(m, ref, ref_images, images, ctx, schedule)
            target = self.out if side == "current" else result.baseline_dir
            out_list = result.records if side == "current" else result.baseline_records
            for stack in stacks:
                rec = records.get((side, stack.spec))
                if rec is None:
                    continue
                rec.load = load.as_dict()
                rec.interleave = {"side": side, "src": result.schedule["sides"][side]}
                out_list.append(self._append(target, rec))
        result.warnings = self._warnings(load, None)
        self._write_run_json(result)
        return result

    def _worker_record(self, m: _Measured, ref: _Measured | None, ref_images, images, ctx,
                       schedule: Schedule) -> Record:
        info = m.arm.info
        rec = self._record(dict(info.get("describe") or {"name": self.config.model}), None, "ok",
                           None, spec=m.arm.spec, stack_config=info.get("stack"))
        rec.settings.update(steps=info.get("steps"), dtype=info.get("dtype"))
        rec.notes = info.get("notes") or {}
        rec.schedule = schedule.describe()
        if not m.timing.latencies_s:
            rec.fail("failed", m.timing.error or "no timed call")
            return rec
        self._fill_measurement(rec, m, ref, ctx, rec.notes)
        rec.model_size = {"params": (rec.model or {}).get("params"),
                          "method": "unavailable: FLOPs are counted in this process only"}
        if m.arm.label in images and ref_images is not None:
            q_prompts, q_labels, q_seeds = ctx.quality
            self._fill_quality(rec, ctx.base, images[m.arm.label], ref_images, q_prompts, q_labels)
            rec.images = self._save_images(m.arm.label, images[m.arm.label])
            rec.image_prompts = list(q_prompts[:GRID_IMAGES])
            rec.image_seeds = list(q_seeds[:GRID_IMAGES])
        return rec

    # -- records and files -----------------------------------------------------------------
    def _record(self, describe: dict[str, Any], stack, status: str, error: str | None,
                spec: str | None = None, stack_config: Any = None) -> Record:
        from bench import environment

        cfg = self.config
        if self._environment is None:
            self._environment = environment.capture(cfg.device)
        describe = dict(describe)
        if self.fingerprint and "base_fingerprint" not in describe:
            describe["base_fingerprint"] = self.fingerprint
        return Record(
            run_id=self.run_id,
            model=describe,
            strategy=spec if spec is not None else stack.spec,
            status=status,
            error=error,
            stack=stack_config if stack_config is not None else (stack.config() if stack else []),
            settings={
                "device": cfg.device,
                "batch_size": cfg.batch_size,
                "steps": describe.get("call_args", {}).get("num_inference_steps"),
                "resolution": list(cfg.resolution) if cfg.resolution else None,
                "quality_images": cfg.quality_images,
                "seed": cfg.seed,
                "load_dtype": self.load_dtype,
                "threads": _torch_threads(),
            },
            config=cfg.as_dict(),
            environment=self._environment,
        )

    def _append(self, folder: Path, rec: Record) -> dict[str, Any]:
        from bench import results
        from bench.explain import why_slower

        rec.slower_because = why_slower(rec.to_dict())
        data = rec.to_dict()
        results.append(folder, data)
        return data

    def _save_images(self, label: str, images) -> str:
        from bench.images import save_grid

        path = self.out / "images" / f"{slug(label)}.png"
        save_grid(images[:GRID_IMAGES], path, ncol=10)
        return str(path.relative_to(self.out))

    def _save_series(self, label: str, result, timing: Timing) -> str | None:
        """Write the samples of this stack's own calls (warm-up and timed) as its series."""
        from bench.samplers import series

        windows = [*timing.warmup_bounds, *timing.bounds]
        try:
            own = series.restrict(result, windows)
            path = series.write(own, self.out / "series" / slug(label),
                                extra={"run_id": self.run_id, "strategy": label})
        except Exception as exc:  # the timeline is a nice-to-have; the record is not
            self.log(f"[{label}] raw series not saved: {type(exc).__name__}: {exc}")
            return None
        return str(path.relative_to(self.out))

    def _warnings(self, load: machine.LoadReport, drift: dict[str, Any] | None) -> list[str]:
        out = []
        if self.config.timing.below_protocol:
            out.append(
                f"{self.config.timing.warmup} warm-up call(s) per stack, below the measurement "
                f"protocol's {PROTOCOL_WARMUP}: the first timed calls may still pay one-off costs; "
                "every record says so in its caveats"
            )
        if load.warning:
            out.append(load.warning)
        if drift and drift.get("ratio") is not None and abs(drift["ratio"] - 1) > 0.05:
            out.append(
                f"the baseline took {drift['first_ms']:.0f} ms per call at the start and "
                f"{drift['last_ms']:.0f} ms at the end ({(drift['ratio'] - 1) * 100:+.0f}%): the "
                "machine's speed drifted during this sequential run, so speedups are uncertain "
                "by about as much. Close other work, or let the stacks be interleaved "
                "(--schedule interleaved)."
            )
        return out

    def _write_run_json(self, result: RunResult) -> None:
        summary = {"run_id": self.run_id, "schedule": result.schedule, "load": result.load,
                   "baseline_drift": result.drift, "warnings": result.warnings}
        (self.out / "run.json").write_text(json.dumps(sanitize(summary), indent=1, default=str))


@dataclass
class _Context:
    base: Any
    load_s: float
    timed: tuple[list[str], list[int]]
    quality: tuple[list[str], list[int], list[int]]
    reference_images: Any
    load: machine.LoadReport
    other_cores: list[float | None] = field(default_factory=list)
    #: Storages of the loaded model's weights, which every stack shares.
    shared: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Version counters of the loaded model's weights before any stack was applied.
    versions: dict[int, Any] = field(default_factory=dict)


@dataclass
class _Measured:
    arm: Any
    timing: Timing
    result: Any  # SamplerResult over the arm's own calls, None when nothing was timed
    cuda_peak_mb: float | None = None
    #: Timed in alternation with other arms: the sampler's window was shared.
    shared: bool = False


class _Writer:
    """Appends records to ``results.jsonl`` as their stacks finish, so that a run that dies
    keeps what it measured. The reference's record comes first: records known before it
    (stacks refused or failed before timing) wait for it."""

    def __init__(self, engine: Engine, ctx: _Context) -> None:
        self.engine = engine
        self.ctx = ctx
        self.pending: list[Record] = []
        self.reference_done = not engine.config.measure_reference
        #: Each written record's dict, by the id of its Record.
        self.written: dict[int, dict[str, Any]] = {}

    def add(self, rec: Record) -> None:
        """Write ``rec`` now, or once the reference's record is written."""
        if rec.strategy == REFERENCE:
            self._write(rec)
            self.reference_done = True
            self.flush()
        elif self.reference_done:
            self._write(rec)
        else:
            self.pending.append(rec)

    def flush(self) -> None:
        """Write every record still waiting (the end of a run, or the reference done)."""
        for rec in self.pending:
            self._write(rec)
        self.pending.clear()

    def final_load(self) -> machine.LoadReport:
        """The machine's load over the run so far."""
        return machine.finish(self.ctx.load, _mean_other(self.ctx.other_cores))

    def _write(self, rec: Record) -> None:
        load = self.final_load()
        rec.load = load.as_dict()
        if load.warning and rec.ok and load.warning not in rec.caveats:
            rec.caveats.append(load.warning)
        if rec.schedule is None:
            rec.schedule = self.engine._schedule_info()
        if self.engine._machine_probe is not None and rec.ok:
            rec.probe = self.engine._machine_probe.as_dict()
        self.written[id(rec)] = self.engine._append(self.engine.out, rec)


def _failure(exc: BaseException) -> str:
    """One line for a stack that raised: out-of-memory errors say so first."""
    return _failure_text(f"{type(exc).__name__}: {exc}")


def apply_call_settings(base: Any, cfg: RunConfig) -> None:
    """Set ``cfg``'s step count and resolution on the loaded ``base`` (checked: a model
    without a step count, or a resolution the model cannot take, is refused). Local runs and
    code against code share it, so both measure the same call."""
    from bench.models.registry import check_resolution
    from strategies import StrategyError

    if cfg.steps is not None:
        if "num_inference_steps" not in base.call_args:
            raise StrategyError(f"{base.name} has no denoising step count to set")
        base.call_args["num_inference_steps"] = cfg.steps
    if cfg.resolution is not None:
        check_resolution(cfg.model, cfg.resolution)
        if "height" in base.call_args or cfg.model.startswith(("hf:", "arch:")):
            base.call_args["height"], base.call_args["width"] = cfg.resolution


#: Call arguments both sides of code against code must run with (the step count is passed to
#: workers by every tree, and a stack may change it: steps:n=4).
_COMPARED_CALL_ARGS = ("height", "width")


def _call_settings_differ(base: Any, info: dict[str, Any]) -> str | None:
    """Why a worker's model does not run the call this run asked for (a tree from before a
    setting was passed to workers ignores it), or None."""
    theirs = (info.get("describe") or {}).get("call_args") or {}
    if not theirs:
        return None  # nothing reported to compare
    diff = [f"{k} {theirs.get(k)} (asked {base.call_args.get(k)})" for k in _COMPARED_CALL_ARGS
            if k in base.call_args and theirs.get(k) != base.call_args.get(k)]
    if not diff:
        return None
    return ("its worker runs another call than this run measures: " + ", ".join(diff)
            + "; that tree does not apply these settings (run without them)")


def _failure_text(text: str | None) -> str:
    text = (text or "failed").strip()
    if "OutOfMemoryError" in text or "out of memory" in text.lower():
        first = text.splitlines()[0]
        return f"out of memory: {first}" if not first.startswith("out of memory") else first
    return text


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _machine_cores() -> int:
    import os

    return os.cpu_count() or 1


def _mean_other(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


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
