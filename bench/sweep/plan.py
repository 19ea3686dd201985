"""A sweep, validated and planned: plugins imported, every job checked against the registry
(models, stacks, devices, resolutions, steps, exclusions) before any model loads; job
payloads; and the latest record of each job."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core import results
from bench.core.errors import StrategyError, SweepError
from bench.core.record import REFERENCE
from bench.models.registry import ModelError, check_device, check_resolution, get_model_info
from bench.sweep.spec import (
    _AXES,
    JOB_SCHEMA,
    Job,
    Settings,
    SweepSpec,
    _digest,
    _int,
    _steps,
    _str,
    parse_resolution,
)
from strategies import get_strategy, parse_stack


# ---------------------------------------------------------------------------------------
# Validation and expansion
# ---------------------------------------------------------------------------------------
def import_plugins(plugins: Iterable[str], sys_path: Iterable[str] = ()) -> None:
    """Import each plugin module (after putting ``sys_path`` on the import path)."""
    import importlib

    for folder in sys_path:
        if folder not in sys.path:
            sys.path.append(folder)  # last: for plugins, never shadowing installed packages
    for name in plugins:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise SweepError(f"plugin {name!r} cannot be imported: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Plan:
    """The validated, expanded sweep: its jobs in run order, and what was left out."""

    spec: SweepSpec
    jobs: tuple[Job, ...]
    excluded: int = 0
    warnings: tuple[str, ...] = ()

    def by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}


def validate(spec: SweepSpec, *, check_devices: bool = True) -> Plan:
    """Check every name and combination, then expand into jobs; no model is loaded.

    ``check_devices=False`` skips checking that this machine has the devices (for a Ray
    cluster, whose workers have them; the executor checks the cluster instead).
    """

    import_plugins(spec.plugins, spec.sys_path)

    kinds: dict[str, str | None] = {}
    for model in spec.models:
        if model.startswith("hf:"):
            if len(model) == 3:
                raise SweepError("models: 'hf:' needs a repo id or a local path after it")
            kinds[model] = None
            continue
        try:
            kinds[model] = get_model_info(model).kind
        except ModelError as exc:
            raise SweepError(f"models: {exc}") from None

    stacks = []
    seen: set[str] = set()
    for i, text in enumerate(spec.strategies):
        try:
            stack = parse_stack(text)
        except StrategyError as exc:
            raise SweepError(f"strategies[{i}] {text!r}: {exc}") from None
        if stack.is_baseline or stack.spec in seen:
            continue  # the baseline is always measured; duplicates (a+b, b+a) run once
        seen.add(stack.spec)
        stacks.append(stack)

    for device in sorted({s.device for s in spec.settings}):
        if check_devices:
            try:
                check_device(device)
            except ModelError as exc:
                raise SweepError(f"[settings] device: {exc}") from None
        for stack in stacks:
            try:
                stack.check_device(device)
            except StrategyError as exc:
                raise SweepError(f"strategies: {exc} (exclude it with an [[exclude]] rule)") from None

    for model in spec.models:
        for s in spec.settings:
            if s.steps is not None and kinds[model] == "autoregressive":
                raise SweepError(
                    f"{model} is autoregressive: it has no denoising steps to set; "
                    "sweep it in a file without [settings] steps"
                )
            if s.resolution is not None:
                try:
                    check_resolution(model, s.resolution)
                except ModelError as exc:
                    raise SweepError(f"[settings] resolution: {exc}") from None

    exclude = [_exclude_rule(rule, i, parse_stack) for i, rule in enumerate(spec.exclude)]
    used = [0] * len(exclude)
    measurement = spec.measurement()
    jobs: list[Job] = []
    producers: dict[str, str] = {}
    excluded = 0
    for model in spec.models:
        for s in spec.settings:
            group = _digest({"model": model, "settings": s.as_dict(), **measurement})
            images_key = _digest({
                "model": model, "device": s.device, "steps": s.steps,
                "resolution": s.as_dict()["resolution"],
                "quality_images": spec.quality_images, "seed": spec.seed,
            })
            for stack in [None, *stacks]:
                spec_text = REFERENCE if stack is None else stack.spec
                hits = [i for i, r in enumerate(exclude) if _matches(r, model, s, stack)]
                for i in hits:
                    used[i] += 1
                if hits and stack is not None:
                    excluded += 1
                    continue
                job_id = _digest({
                    "schema": JOB_SCHEMA, "model": model, "settings": s.as_dict(),
                    "strategy": spec_text, **measurement,
                })
                after = producers.get(images_key) if spec.quality_images else None
                if after is None and spec.quality_images:
                    producers[images_key] = job_id
                jobs.append(Job(job_id, group, images_key, model, s, spec_text, after))
    warnings = tuple(
        f"[[exclude]] #{i + 1} {dict(spec.exclude[i])} matches no job"
        for i, n in enumerate(used) if n == 0
    )
    # Producers first, so images exist before the jobs that need them can start.
    jobs.sort(key=lambda j: j.after is not None)
    return Plan(spec, tuple(jobs), excluded, warnings)


def _exclude_rule(rule: dict[str, Any], index: int, parse_stack) -> dict[str, Any]:
    where = f"[[exclude]] #{index + 1}"
    out: dict[str, Any] = {}
    for key, value in rule.items():
        if key == "strategy":
            text = _str(value, f"{where} strategy")
            if text == REFERENCE:
                raise SweepError(f"{where}: the baseline cannot be excluded; it is every job's reference")
            if ":" not in text and "+" not in text:
                try:
                    get_strategy(text)
                except StrategyError as exc:
                    raise SweepError(f"{where} strategy: {exc}") from None
                out["strategy_name"] = text
            else:
                try:
                    out["strategy"] = parse_stack(text).spec
                except StrategyError as exc:
                    raise SweepError(f"{where} strategy {text!r}: {exc}") from None
        elif key == "resolution":
            out[key] = parse_resolution(value, f"{where} resolution")
        elif key == "steps":
            out[key] = _steps(value, f"{where} steps")
        elif key == "batch_size":
            out[key] = _int(value, f"{where} batch_size", low=1)
        else:
            out[key] = _str(value, f"{where} {key}")
    return out


def _matches(rule: dict[str, Any], model: str, s: Settings, stack) -> bool:
    if "model" in rule and rule["model"] != model:
        return False
    for axis in _AXES:
        if axis in rule and rule[axis] != getattr(s, axis):
            return False
    if "strategy" in rule and (stack is None or stack.spec != rule["strategy"]):
        return False
    if "strategy_name" in rule and (
        stack is None or rule["strategy_name"] not in [x.name for x in stack]
    ):
        return False
    return True


# ---------------------------------------------------------------------------------------
# What a job process needs
# ---------------------------------------------------------------------------------------
def payload(spec: SweepSpec, job: Job) -> dict[str, Any]:
    """Everything a worker needs to run ``job``, as plain JSON (no paths of this process
    beyond the import path; the executor adds where to write and how many threads)."""
    return {
        "schema": JOB_SCHEMA,
        "id": job.id,
        "group": job.group,
        "images_key": job.images_key,
        "sweep": spec.name,
        "model": job.model,
        "strategy": job.strategy,
        "settings": job.settings.as_dict(),
        "run": {
            "timing": spec.timing,
            "quality": spec.quality,
            "quality_images": spec.quality_images,
            "seed": spec.seed,
            "sample_interval_s": spec.sample_interval_s,
            "trust_remote_code": spec.trust_remote_code,
            "allow_download": spec.allow_download,
        },
        "plugins": list(spec.plugins),
        "sys_path": list(spec.sys_path),
        "timeout_s": spec.timeout_s,
        "env": {k: v for k, v in os.environ.items() if k.startswith("ACCELBENCH_")},
    }


def latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest record of each sweep job, by job id (later lines win)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        job_id = (r.get("sweep") or {}).get("job_id")
        if job_id:
            out[job_id] = r
    return out


def load_results(path: str | Path):
    """A sweep's results as a DataFrame: the newest record of each job (a job run again with
    ``--retry-failed`` counts once), the columns of :func:`bench.results.load` plus
    ``job_id``, ``group`` (rows of one model and settings share it), ``resolution`` and
    ``host``."""
    import pandas as pd


    rows = []
    for job_id, r in latest(results.iter_records(path)).items():
        row = results.flatten(r)
        asked = r["sweep"].get("settings") or {}
        res = (r.get("settings") or {}).get("resolution") or asked.get("resolution")
        row.update(job_id=job_id, group=r["sweep"].get("group"), host=r["sweep"].get("host"),
                   resolution=f"{res[1]}x{res[0]}" if res else None)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col in results.COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    extras = [c for c in frame.columns if c not in results.COLUMNS]
    return frame[results.COLUMNS + extras]
