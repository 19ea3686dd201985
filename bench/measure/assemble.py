"""Record assembly: what the engine measured for one arm, turned into its :class:`Record`
(statistics, speedup, cold costs, decoding counts, memory, energy, FLOPs, quality, caveats),
and the records written as they finish. Mixed into :class:`bench.measure.engine.Engine`."""

from __future__ import annotations

import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.core import compare, results, stats
from bench.core.config import PROTOCOL_WARMUP, warmup_caveat
from bench.core.explain import why_slower
from bench.core.formats import sanitize, slug
from bench.core.record import REFERENCE, Record
from bench.measure import baseline_cache, environment, flops, footprint, machine
from bench.measure.arms import LocalArm
from bench.measure.harness import Timing
from bench.measure.images import save_grid
from bench.measure.measures import energy_fields, median_step_ms, memory_fields, score_quality
from bench.measure.samplers import series
from bench.measure.schedules import Schedule
from bench.quality.suite import QualitySuite

#: Quality images saved as the grid of each stack (the report shows them).
GRID_IMAGES = 20
#: Decoding counts of token models copied into ``stats``.
DECODING_STATS = ("tokens_per_forward", "forward_passes_per_image", "acceptance_rate",
                  "token_acceptance")


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


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _machine_cores() -> int:
    import os

    return os.cpu_count() or 1


def _mean_other(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


class RecordAssembly:
    """The engine's record-making half (it reads ``config``, ``run_id``, ``log``, ``images``,
    ``keep_images``, ``out_dir`` and ``_suite`` of the engine it is mixed into)."""

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
                rec.images = self._save_images(arm.label, images, ctx.base.frame_rate)
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
        """Token rates of models that generate tokens, and their decoding counts; frame rates
        of models that generate videos."""
        per_image = rec.model.get("tokens_per_image")
        if per_image and rec.stats:
            rec.stats["tokens_per_s"] = per_image * rec.stats["images_per_s"]
        video = rec.model.get("video") or {}
        if video and rec.stats:
            frames = video.get("frames_per_video")
            rec.stats["frames_per_video"] = frames
            rec.stats["frame_rate"] = video.get("frame_rate")
            rec.stats["s_per_video"] = rec.stats["ms_per_image"] / 1000
            rec.stats["frames_per_s"] = frames * rec.stats["images_per_s"] if frames else None
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
            self._suite = QualitySuite(base, self.config.quality, hub=self.config.model.startswith("hf:"),
                                       use_cache=self.config.use_cache)
        return self._suite

    def _reference_images(self, base, prompts, seeds) -> Any:
        if not prompts:
            return None
        key = baseline_cache.key(base, prompts, seeds)
        if self.config.use_cache:
            cached = baseline_cache.get(key)
            if cached is not None:
                self.log("baseline images: from cache")
                return cached
        self.log(f"baseline images: generating {len(prompts)}")
        images = self._generate(LocalArm(REFERENCE, base, [], []), prompts, seeds, "baseline images")
        if self.config.use_cache:
            baseline_cache.put(key, images)
        return images

    def _generate(self, arm: Any, prompts, seeds, desc: str) -> Any:
        batch = self.config.quality_batch_size or self.config.batch_size
        with tqdm(total=len(prompts), desc=desc, unit="img", disable=not self.show_progress,
                  leave=False) as bar:
            return arm.images(prompts, seeds, batch, progress=bar.update)

    def _record(self, describe: dict[str, Any], stack, status: str, error: str | None,
                spec: str | None = None, stack_config: Any = None) -> Record:
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
        rec.slower_because = why_slower(rec.to_dict())
        data = rec.to_dict()
        results.append(folder, data)
        return data

    def _save_images(self, label: str, images, frame_rate: float | None = None) -> str:
        """Save the grid of a stack's first quality images (an animated one for videos, at
        ``frame_rate``); the path relative to the run directory."""
        path = self.out / "images" / f"{slug(label)}.png"
        save_grid(images[:GRID_IMAGES], path, ncol=10, frame_rate=frame_rate)
        return str(path.relative_to(self.out))

    def _save_series(self, label: str, result, timing: Timing) -> str | None:
        """Write the samples of this stack's own calls (warm-up and timed) as its series."""
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

    def __init__(self, engine: Any, ctx: _Context) -> None:
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


def _failure_text(text: str | None) -> str:
    text = (text or "failed").strip()
    if "OutOfMemoryError" in text or "out of memory" in text.lower():
        first = text.splitlines()[0]
        return f"out of memory: {first}" if not first.startswith("out of memory") else first
    return text
