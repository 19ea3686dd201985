"""A sweep file, parsed: its settings axes, jobs and stable job ids (no model is loaded)."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import config
from bench.core.config import SAMPLE_INTERVAL_S, TimingConfig
from bench.core.errors import ConfigError, SweepError
from bench.core.quality_config import QualityConfig
from bench.core.record import REFERENCE

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
# strategies.core.registry.register(...) at import. They must be importable from the current
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
        timing: keyword arguments of :class:`bench.measure.harness.TimingConfig`.
        quality: keyword arguments of :class:`bench.core.quality_config.QualityConfig`.
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
    sample_interval_s: float = SAMPLE_INTERVAL_S
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
            "strategies": [REFERENCE, *self.strategies],
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
        return self.strategy == REFERENCE

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
    """:func:`bench.core.config.parse_resolution`, as a sweep file's error."""
    try:
        return config.parse_resolution(value, where)
    except ConfigError as exc:
        raise SweepError(str(exc)) from None


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
    sample_interval = _float(timing_t.get("sample_interval_s", SAMPLE_INTERVAL_S), "[timing] sample_interval_s", low=0.001)
    try:
        TimingConfig(**timing)
    except ValueError as exc:
        raise SweepError(f"[timing]: {exc}") from None

    quality_t = _table(data, "quality")
    _check_keys(quality_t, _QUALITY_KEYS, "[quality]")
    quality_images = _int(quality_t.get("images", 100), "[quality] images", low=0)
    seed = _int(quality_t.get("seed", 0), "[quality] seed", low=0)
    quality = {k: v for k, v in quality_t.items() if k not in ("images", "seed")}
    try:
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
