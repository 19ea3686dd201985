"""Sweeps: models x settings x strategy stacks, from a TOML file, run as isolated jobs.

A sweep file names models, strategy stacks and settings axes (device, batch size, steps,
resolution); every combination is a **job**. The whole sweep is expanded and validated
before any model loads: unknown models or strategies (with "did you mean"), stacks that
cannot be combined, devices this machine lacks, resolutions a model cannot generate and
step counts a model does not have are refused at once, with the reason.

What a job is (the design)
--------------------------
A speedup is only honest against a baseline measured *in the same process, on the same
device, at nearly the same time*: machines drift by tens of percent between runs minutes
apart, two processes on one GPU get different clocks, and a Ray cluster mixes machines.
And one strategy that crashes (a segfaulting kernel, an out-of-memory error, a hang) must
not take the other stacks' results with it. So:

* **one job = one (model, settings, stack)**, in its own process: a crash, an OOM kill or a
  hang (past ``timeout_s``) becomes that job's failed record, with the error (and, for a
  timeout, the limit), and the sweep goes on;
* **each job times the baseline itself, in alternation with its stack**, in the same
  process (the engine, :mod:`bench.engine`, interleaves them round by round wherever both fit
  in memory, else times the baseline just before the stack and again after it), so the
  speedup stored in the job's record is against a baseline measured on the same machine, in
  the same process, in the same minutes. The reference timings travel in the record
  (``reference``). This costs one extra timed arm per job: cheap next to loading the model
  and generating the quality images;
* **the baseline itself is one job per (model, settings)**, whose record is the group's
  baseline row (with its quality, image grid, memory and energy);
* **baseline images are generated once** per (model, steps, resolution, device, quality
  images, seed) and shared through the disk cache (:mod:`bench.baseline_cache`, written
  atomically): the first baseline job of that key produces them, and every other job with
  the same key waits for it to finish before it starts. On several machines the cache is
  per machine unless ``ACCELBENCH_CACHE`` points to a shared folder.

Rejected alternatives: one job per (model, settings) running every stack (one crash loses
the group, and a hang blocks it); speedups computed when gathering, against a baseline job
run elsewhere or earlier (on a cluster that baseline may come from another machine, and on
one machine from another thermal and load state).

Resume
------
Each job has a stable id: a hash of the model, the settings, the canonical stack spec and
everything that changes the measurement (timing, quality settings, seed) -- not of the
timeout, the worker count or the order of the file. Records carry it (``sweep.job_id``);
running the same sweep again skips jobs already recorded (``--retry-failed`` reruns failed
ones; the newest record of a job is the one that counts). Records are appended by the sweep
process alone, one fsynced line each (:func:`bench.results.append`); a torn last line left
by a kill is cut off before anything is appended, and a record a job wrote just before the
sweep was killed is picked up on the next run. See :mod:`bench.executors` for how jobs run.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_SCHEMA = "accelbench.job/1"

#: A commented example, printed by ``accelbench sweep --example``.
EXAMPLE = """\
# accelbench sweep file: every model x every combination of [settings] x every stack.
# Run it with `accelbench sweep FILE`; run it again to resume (finished jobs are skipped).

name = "digits"                 # the output folder is runs/sweep-<name> unless `out` is set
# out = "runs/my-sweep"         # relative to the current directory

# Registry names (`accelbench list`) or hf:<repo id or local path> for diffusers pipelines.
models = ["digits-unet", "digits-dit"]

# Strategy stacks (name[:key=value,...], '+' stacks several). The baseline is always
# measured: no need to list it.
strategies = [
    "bf16",
    "steps:n=10",
    "scheduler:name=dpm-solver+steps:n=10",
    "channels-last",
]

# Modules imported before validation and in every job: strategies of your own that call
# strategies.registry.register(...) at import. They must be importable from the current
# directory, the folder of this file, or the installed packages.
# plugins = ["my_strategies"]

[settings]                      # each a value or a list; every combination is swept
device = "cpu"                  # cpu, cuda, cuda:1, mps
batch_size = [1, 8]             # images per timed generation call
steps = 25                      # denoising steps of the baseline; omit for the model's own
# resolution = 16               # 16 only on the embedded models; hf: models take any
                                # multiple of 8: 512, or "768x512" (width x height)

[timing]
warmup = 2                      # untimed calls first (the protocol's least; fewer is a caveat)
iterations = 10                 # timed calls (rounds) at least
min_seconds = 2.0               # and timed seconds at least
# max_iterations = 200
# max_seconds = 300.0
# sample_interval_s = 0.05      # memory/power sampling period
# sync_steps = false            # true: synchronise after every step (older per-step clock)

[quality]
images = 100                    # generated apart from the timing, scored against the baseline
seed = 0                        # image i uses seed + i
# noise_floor_seeds = 10        # 0 turns the FID/KID noise floor off
# real_images_dir = "/data/real-images"   # Inception FID/KID for hf: models
# clip_backbone = "openai/clip-vit-large-patch14"

[jobs]
timeout_s = 1800                # a job running longer is killed: a failed row, the sweep goes
                                # on (0: no limit)
workers = 1                     # jobs at once on this machine (see the README before raising it)
# threads = 0                   # torch threads per job; 0: this machine's cores / workers

# Combinations not to run: every key given must match (model, strategy, device,
# batch_size, steps, resolution). A bare strategy name matches every stack that uses it.
[[exclude]]
model = "digits-dit"
strategy = "channels-last"
"""

_TOP_KEYS = ("name", "out", "models", "strategies", "plugins", "settings", "timing",
             "quality", "jobs", "exclude", "trust_remote_code", "allow_download")
_AXES = ("device", "batch_size", "steps", "resolution")
_TIMING_KEYS = ("warmup", "iterations", "min_seconds", "max_iterations", "max_seconds",
                "sample_interval_s", "sync_steps")
_QUALITY_KEYS = ("images", "seed", "kid_subset_size", "kid_subsets", "kid_seed",
                 "noise_floor_seeds", "real_images_dir", "clip_backbone", "lpips_net")
_JOBS_KEYS = ("timeout_s", "workers", "threads")
_EXCLUDE_KEYS = ("model", "strategy", *_AXES)


class SweepError(ValueError):
    """A sweep file that cannot be run; the message says where and why."""


# ---------------------------------------------------------------------------------------
# Spec
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """One combination of the settings axes.

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        batch_size: images per timed generation call.
        steps: denoising steps of the baseline; None: the model's default.
        resolution: (height, width); None: the model's own.
    """

    device: str = "cpu"
    batch_size: int = 8
    steps: int | None = None
    resolution: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "resolution": list(self.resolution) if self.resolution else None,
        }

    @property
    def label(self) -> str:
        """Short text: ``cpu b8 25 steps 512x512``."""
        parts = [self.device, f"b{self.batch_size}"]
        if self.steps is not None:
            parts.append(f"{self.steps} steps")
        if self.resolution is not None:
            parts.append(f"{self.resolution[1]}x{self.resolution[0]}")
        return " ".join(parts)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep file.

    Attributes:
        name: the sweep's name (records carry it).
        out_dir: where results.jsonl and the job folders go.
        models: registry names or ``hf:`` ids.
        strategies: canonical non-baseline stack specs (the baseline is implied).
        settings: every combination of the settings axes, in file order.
        timing: keyword arguments of :class:`bench.harness.TimingConfig`.
        quality: keyword arguments of :class:`bench.quality.config.QualityConfig`.
        quality_images: images generated for quality per job.
        seed: seed of the first image.
        sample_interval_s: sampler period.
        timeout_s: per-job time limit (None: none).
        workers: jobs at once (local executor).
        threads: torch threads per job (None: cores / workers).
        plugins: modules imported before validation and in every job.
        sys_path: folders jobs add to their import path (the file's folder, the current one).
        exclude: combinations not to run.
        trust_remote_code, allow_download: passed to hub model loading.
        source: the file it came from.
    """

    name: str
    out_dir: Path
    models: tuple[str, ...]
    strategies: tuple[str, ...]
    settings: tuple[Settings, ...]
    timing: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    quality_images: int = 100
    seed: int = 0
    sample_interval_s: float = 0.05
    timeout_s: float | None = 1800.0
    workers: int = 1
    threads: int | None = None
    plugins: tuple[str, ...] = ()
    sys_path: tuple[str, ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    trust_remote_code: bool = False
    allow_download: bool = False
    source: str | None = None

    def measurement(self) -> dict[str, Any]:
        """What changes a measurement (part of every job id)."""
        return {
            "timing": dict(sorted(self.timing.items())),
            "quality": dict(sorted(self.quality.items())),
            "quality_images": self.quality_images,
            "seed": self.seed,
            "sample_interval_s": self.sample_interval_s,
        }

    def as_dict(self) -> dict[str, Any]:
        """The resolved spec, saved next to the results."""
        return {
            "name": self.name,
            "out_dir": str(self.out_dir),
            "models": list(self.models),
            "strategies": ["baseline", *self.strategies],
            "settings": [s.as_dict() for s in self.settings],
            **self.measurement(),
            "timeout_s": self.timeout_s,
            "workers": self.workers,
            "threads": self.threads,
            "plugins": list(self.plugins),
            "exclude": [dict(e) for e in self.exclude],
            "trust_remote_code": self.trust_remote_code,
            "allow_download": self.allow_download,
            "source": self.source,
        }


@dataclass(frozen=True)
class Job:
    """One (model, settings, stack) to measure in its own process.

    Attributes:
        id: stable hash of what the job measures (see the module docstring).
        group: id of its (model, settings): the jobs whose speedups belong together.
        images_key: jobs sharing baseline images (same model, device, steps, resolution,
            quality images and seed).
        after: id of the job producing those images, which must finish first (None: this
            job produces them, or nothing needs producing).
        model, settings, strategy: what is measured (``strategy`` is the canonical spec).
    """

    id: str
    group: str
    images_key: str
    model: str
    settings: Settings
    strategy: str
    after: str | None = None

    @property
    def is_baseline(self) -> bool:
        return self.strategy == "baseline"

    @property
    def label(self) -> str:
        return f"{self.model} [{self.settings.label}] {self.strategy}"


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=2, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_keys(table: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise SweepError(
                f"{where}: unknown key {key!r}{_did_you_mean(key, allowed)} "
                f"(allowed: {', '.join(allowed)})"
            )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _int(value: Any, where: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SweepError(f"{where}: expected a whole number, got {value!r}")
    if low is not None and value < low:
        raise SweepError(f"{where}: must be >= {low}, got {value}")
    return value


def _float(value: Any, where: str, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweepError(f"{where}: expected a number, got {value!r}")
    if low is not None and value < low:
        raise SweepError(f"{where}: must be >= {low}, got {value}")
    return float(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SweepError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def parse_resolution(value: Any, where: str = "resolution") -> tuple[int, int]:
    """``512`` -> (512, 512); ``"768x512"`` (width x height) -> (512, 768) as (height, width)."""
    if isinstance(value, bool):
        raise SweepError(f"{where}: expected 512 or \"768x512\", got {value!r}")
    if isinstance(value, int):
        size = _int(value, where, low=1)
        return size, size
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value), int(value)
    if isinstance(value, str):
        w, sep, h = value.lower().partition("x")
        if sep and w.strip().isdigit() and h.strip().isdigit() and int(w) > 0 and int(h) > 0:
            return int(h), int(w)
    raise SweepError(f"{where}: expected a size like 512 or \"768x512\" (width x height), got {value!r}")


def _axis(settings: dict[str, Any], name: str, default: Any, convert) -> list[Any]:
    if name not in settings:
        return [default]
    values = _as_list(settings[name])
    if not values:
        raise SweepError(f"[settings] {name}: an empty list sweeps nothing")
    out = []
    for i, v in enumerate(values):
        where = f"[settings] {name}" + (f"[{i}]" if isinstance(settings[name], list) else "")
        c = convert(v, where)
        if c in out:
            raise SweepError(f"{where}: {v!r} is listed twice")
        out.append(c)
    return out


def _steps(value: Any, where: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("default", "model"):
        return None
    return _int(value, where, low=1)


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SweepError(f"[{key}] must be a table, got {value!r}")
    return value


def parse(data: dict[str, Any], *, source: str | Path | None = None,
          out_dir: str | Path | None = None) -> SweepSpec:
    """Build a :class:`SweepSpec` from parsed TOML, checking names, types and ranges.

    Nothing about models or strategies is checked here; :func:`validate` does that.
    """
    _check_keys(data, _TOP_KEYS, "sweep file")
    src = Path(source).resolve() if source else None
    name = _str(data.get("name", src.stem if src else "sweep"), "name")
    if out_dir is None:
        out_dir = data.get("out") or Path("runs") / f"sweep-{name}"
    models = [_str(m, f"models[{i}]") for i, m in enumerate(_as_list(data.get("models", [])))]
    if not models:
        raise SweepError("models: name at least one model (`accelbench list` shows them)")
    if len(set(models)) != len(models):
        raise SweepError(f"models: listed twice: {sorted({m for m in models if models.count(m) > 1})}")
    strategies = [_str(s, f"strategies[{i}]") for i, s in enumerate(_as_list(data.get("strategies", [])))]

    settings_t = _table(data, "settings")
    _check_keys(settings_t, _AXES, "[settings]")
    devices = _axis(settings_t, "device", "cpu", _str)
    batches = _axis(settings_t, "batch_size", 8, lambda v, w: _int(v, w, low=1))
    steps = _axis(settings_t, "steps", None, _steps)
    resolutions = _axis(settings_t, "resolution", None, parse_resolution)
    combos = tuple(
        Settings(device=d, batch_size=b, steps=s, resolution=r)
        for d, b, s, r in itertools.product(devices, batches, steps, resolutions)
    )

    timing_t = _table(data, "timing")
    _check_keys(timing_t, _TIMING_KEYS, "[timing]")
    timing: dict[str, Any] = {}
    if "warmup" in timing_t:
        timing["warmup"] = _int(timing_t["warmup"], "[timing] warmup", low=0)
    if "iterations" in timing_t:
        timing["min_iterations"] = _int(timing_t["iterations"], "[timing] iterations", low=1)
    if "min_seconds" in timing_t:
        timing["min_seconds"] = _float(timing_t["min_seconds"], "[timing] min_seconds", low=0)
    if "max_seconds" in timing_t:
        timing["max_seconds"] = _float(timing_t["max_seconds"], "[timing] max_seconds", low=0)
    if "max_iterations" in timing_t:
        timing["max_iterations"] = _int(timing_t["max_iterations"], "[timing] max_iterations", low=1)
    else:
        timing["max_iterations"] = max(200, timing.get("min_iterations", 5))
    if "sync_steps" in timing_t:
        if not isinstance(timing_t["sync_steps"], bool):
            raise SweepError("[timing] sync_steps: expected true or false")
        timing["sync_steps"] = timing_t["sync_steps"]
    sample_interval = _float(timing_t.get("sample_interval_s", 0.05), "[timing] sample_interval_s", low=0.001)
    try:
        from bench.config import TimingConfig

        TimingConfig(**timing)
    except ValueError as exc:
        raise SweepError(f"[timing]: {exc}") from None

    quality_t = _table(data, "quality")
    _check_keys(quality_t, _QUALITY_KEYS, "[quality]")
    quality_images = _int(quality_t.get("images", 100), "[quality] images", low=0)
    seed = _int(quality_t.get("seed", 0), "[quality] seed", low=0)
    quality = {k: v for k, v in quality_t.items() if k not in ("images", "seed")}
    try:
        from bench.quality.config import QualityConfig

        QualityConfig(**quality)
    except (TypeError, ValueError) as exc:
        raise SweepError(f"[quality]: {exc}") from None

    jobs_t = _table(data, "jobs")
    _check_keys(jobs_t, _JOBS_KEYS, "[jobs]")
    timeout = jobs_t.get("timeout_s", 1800)
    timeout_s = None if timeout in (0, None) else _float(timeout, "[jobs] timeout_s", low=1)
    workers = _int(jobs_t.get("workers", 1), "[jobs] workers", low=1)
    threads = _int(jobs_t.get("threads", 0), "[jobs] threads", low=0) or None

    plugins = tuple(_str(p, f"plugins[{i}]") for i, p in enumerate(_as_list(data.get("plugins", []))))
    exclude_raw = data.get("exclude", [])
    if not isinstance(exclude_raw, list) or not all(isinstance(e, dict) for e in exclude_raw):
        raise SweepError("exclude: write [[exclude]] tables (model = ..., strategy = ..., ...)")
    exclude = []
    for i, rule in enumerate(exclude_raw):
        _check_keys(rule, _EXCLUDE_KEYS, f"[[exclude]] #{i + 1}")
        if not rule:
            raise SweepError(f"[[exclude]] #{i + 1} is empty: it would exclude everything")
        exclude.append(dict(rule))
    for key in ("trust_remote_code", "allow_download"):
        if not isinstance(data.get(key, False), bool):
            raise SweepError(f"{key}: expected true or false")

    sys_path = [str(src.parent)] if src else []
    if os.getcwd() not in sys_path:
        sys_path.append(os.getcwd())
    return SweepSpec(
        name=name,
        out_dir=Path(out_dir),
        models=tuple(models),
        strategies=tuple(strategies),
        settings=combos,
        timing=timing,
        quality=quality,
        quality_images=quality_images,
        seed=seed,
        sample_interval_s=sample_interval,
        timeout_s=timeout_s,
        workers=workers,
        threads=threads,
        plugins=plugins,
        sys_path=tuple(sys_path),
        exclude=tuple(exclude),
        trust_remote_code=bool(data.get("trust_remote_code", False)),
        allow_download=bool(data.get("allow_download", False)),
        source=str(src) if src else None,
    )


def load(path: str | Path, out_dir: str | Path | None = None) -> SweepSpec:
    """Read and parse a sweep file (not yet validated against the registries)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise SweepError("reading sweep files needs Python 3.11 or `pip install tomli`") from None

    path = Path(path)
    if not path.is_file():
        raise SweepError(f"no sweep file at {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, source=path, out_dir=out_dir)


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
    from bench.models.registry import ModelError, check_device, check_resolution, get_model_info
    from strategies.base import StrategyError
    from strategies.registry import parse_stack

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
                spec_text = "baseline" if stack is None else stack.spec
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
    from strategies.base import StrategyError

    where = f"[[exclude]] #{index + 1}"
    out: dict[str, Any] = {}
    for key, value in rule.items():
        if key == "strategy":
            text = _str(value, f"{where} strategy")
            if text == "baseline":
                raise SweepError(f"{where}: the baseline cannot be excluded; it is every job's reference")
            if ":" not in text and "+" not in text:
                from strategies.registry import get_strategy

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

    from bench import results

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


__all__ = [
    "EXAMPLE", "Job", "Plan", "Settings", "SweepError", "SweepSpec", "import_plugins",
    "latest", "load", "load_results", "parse", "parse_resolution", "payload", "validate",
]
