"""Code against code: every stack measured with two code trees (this checkout and, say, the
baseline commit's), each in its own worker process, interleaved round by round. Both sides
take their call settings (steps, resolution) from :func:`apply_call_settings`, the function
the local path uses too. Mixed into :class:`bench.measure.engine.Engine`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core.config import RunConfig
from bench.core.record import REFERENCE, Record
from bench.measure import machine
from bench.measure.arms import WorkerArm
from bench.measure.assemble import (
    GRID_IMAGES,
    RunResult,
    _Context,
    _mean_other,
    _Measured,
    _torch_threads,
)
from bench.measure.schedules import Interleaved, Schedule
from bench.models import load_model
from bench.models.base import ModelSpec
from bench.models.registry import check_resolution
from strategies import StrategyError


class CodeAgainstCode:
    """The engine's code-against-code path (mixed into :class:`bench.measure.engine.Engine`)."""

    def _run_code_against_code(self, stacks, refused: dict[str, str]) -> RunResult:
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
            rec.images = self._save_images(m.arm.label, images[m.arm.label],
                                           ctx.base.frame_rate)
            rec.image_prompts = list(q_prompts[:GRID_IMAGES])
            rec.image_seeds = list(q_seeds[:GRID_IMAGES])
        return rec


def default_current_src() -> Path:
    """The tree the current side of a code-against-code run imports: the working directory's
    accelbench tree when there is one, else the installed package's."""
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / "bench" / "__init__.py").is_file() and (folder / "strategies").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def apply_call_settings(base: Any, cfg: RunConfig) -> None:
    """Set ``cfg``'s step count and resolution on the loaded ``base`` (checked: a model
    without a step count, or a resolution the model cannot take, is refused). Local runs and
    code against code share it, so both measure the same call."""

    if cfg.steps is not None:
        if "num_inference_steps" not in base.call_args:
            raise StrategyError(f"{base.name} has no denoising step count to set")
        base.call_args["num_inference_steps"] = cfg.steps
    if cfg.resolution is not None:
        check_resolution(cfg.model, cfg.resolution)
        if "height" in base.call_args or cfg.model.startswith(("hf:", "arch:")):
            base.call_args["height"], base.call_args["width"] = cfg.resolution


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
