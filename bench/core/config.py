"""What defines a run, as plain, validated data: saved with every record.

The command line, the gate's CI script, sweep jobs, the pytest plugin and the search only
build a :class:`RunConfig` and hand it to :class:`bench.measure.engine.Engine`. This module imports
no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.core import smoke
from bench.core.errors import ConfigError
from bench.core.quality_config import QualityConfig

#: The model every front end uses unless told otherwise (embedded, runs anywhere).
DEFAULT_MODEL = "digits-unet"
#: Memory and power sampling period (s) unless told otherwise.
SAMPLE_INTERVAL_S = 0.05

#: The stacks ``accelbench run`` measures unless told otherwise (the reference first).
DEFAULT_STRATEGIES = ("baseline", "bf16", "steps:n=10", "scheduler:name=dpm-solver+steps:n=10")
#: ``--schedule`` values: ``auto`` interleaves when every stack fits in memory at once.
SCHEDULES = ("auto", "interleaved", "sequential")
#: The dtypes a model can be loaded in (``--dtype``).
DTYPES = ("fp32", "bf16", "fp16")
#: Quality images of a model with data: enough for FID/KID and adherence to settle.
QUALITY_IMAGES = 200
#: Quality images of a random-weight (``arch:``) model: only fidelity to its own baseline
#: means something there, and a few images show it.
RANDOM_WEIGHT_QUALITY_IMAGES = 16


def default_quality_images(random_weights: bool) -> int:
    """Quality images a run generates per stack unless told: :data:`QUALITY_IMAGES`, or
    :data:`RANDOM_WEIGHT_QUALITY_IMAGES` on a random-weight model (capped in a smoke run)."""
    return smoke.cap("quality_images", RANDOM_WEIGHT_QUALITY_IMAGES if random_weights else QUALITY_IMAGES)

#: Settings both sides of a comparison must share; a difference makes the figures
#: incomparable (exit 2) unless ``--allow-settings-change``.
COMPARED_SETTINGS = ("steps", "resolution", "load_dtype", "dtype", "threads", "quality_images",
                     "batch_size", "device")


def parse_resolution(value: Any, where: str = "resolution") -> tuple[int, int]:
    """``512`` -> (512, 512); ``"768x512"`` (width x height) -> (512, 768) as (height, width)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value), int(value)
    if isinstance(value, str):
        w, sep, h = value.lower().partition("x")
        if sep and w.strip().isdigit() and h.strip().isdigit() and int(w) > 0 and int(h) > 0:
            return int(h), int(w)
    raise ConfigError(f"{where}: expected a size like 512 or \"768x512\" (width x height), got {value!r}")


#: Untimed warm-up calls the measurement protocol asks for before timing, at least: the first
#: call pays one-off costs (allocation, kernel selection and autotuning, caches filling) and
#: the second shows whether they are paid.
PROTOCOL_WARMUP = 2


def warmup_caveat(calls: int) -> str | None:
    """What a record says of a stack warmed up with fewer than :data:`PROTOCOL_WARMUP`
    calls (None when it had enough)."""
    if calls >= PROTOCOL_WARMUP:
        return None
    return (f"warm-up of {calls} call{'s' if calls != 1 else ''}, below the protocol's "
            f"{PROTOCOL_WARMUP}: the first timed calls may still pay one-off costs (allocation, "
            "autotuning, caches filling), so latencies may read high")


@dataclass(frozen=True)
class TimingConfig:
    """How long to measure.

    Attributes:
        warmup: untimed full calls before timing: at least :data:`PROTOCOL_WARMUP` per the
            protocol (strategies that compile or cache may need more). Fewer are allowed
            (a smoke check may want 0), and every record so measured carries a caveat
            (:func:`warmup_caveat`) and the run a warning.
        min_iterations: timed calls at least.
        min_seconds: timed seconds at least (both minimums must be met).
        max_iterations: stop after this many timed calls regardless.
        max_seconds: stop after this long regardless (once ``min_iterations`` are done).
        sync_steps: per-step times from host stamps after a device synchronisation at
            every step, the older method, kept to compare with records made that way: it
            drains the device's queue at every step, so the call it times runs slower than
            it would. Off (the default), CUDA steps are timed with CUDA events read after the
            call and nothing but the call's two ends is synchronised; the CPU needs neither;
            other accelerators (MPS, XPU) synchronise at every step either way
            (:func:`bench.measure.harness.step_recorder`; records say which in
            ``timing.step_clock``).
        target_ci: keep measuring until every speedup's 95% interval lies within
            +-``target_ci`` of its estimate (0.05 = 5%), or ``max_seconds`` pass; None: off.
            Interleaved runs check the speedups; a stack timed on its own checks the
            interval of its median latency.
        prune_slower_than: interleaved runs only: a stack whose median latency after a
            round exceeds this multiple of the reference's leaves the schedule and is
            recorded as ``pruned`` (``accelbench tune`` stops hopeless trials so); None: off.
    """

    warmup: int = 2
    min_iterations: int = 10
    min_seconds: float = 2.0
    max_iterations: int = 200
    max_seconds: float = 300.0
    sync_steps: bool = False
    target_ci: float | None = None
    prune_slower_than: float | None = None

    def __post_init__(self) -> None:
        if self.prune_slower_than is not None and not self.prune_slower_than > 1:
            raise ConfigError(f"prune_slower_than must be > 1 (a slowdown factor), got {self.prune_slower_than}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")
        if self.min_iterations < 1:
            raise ConfigError(f"min_iterations must be >= 1, got {self.min_iterations}")
        if self.min_seconds < 0:
            raise ConfigError(f"min_seconds must be >= 0, got {self.min_seconds}")
        if self.max_iterations < self.min_iterations:
            raise ConfigError("max_iterations must be >= min_iterations")
        if self.target_ci is not None and not 0 < self.target_ci < 1:
            raise ConfigError(f"target_ci must be between 0 and 1 (0.05 = 5%), got {self.target_ci}")

    @property
    def below_protocol(self) -> bool:
        """Whether :attr:`warmup` is below the protocol's :data:`PROTOCOL_WARMUP`."""
        return self.warmup < PROTOCOL_WARMUP

    def done(self, calls: int, elapsed_s: float, half_width: Callable[[], float] | None) -> bool:
        """The stop rule, the one every schedule applies: stop at ``max_iterations`` calls,
        or past ``max_seconds`` once ``min_iterations`` are done; otherwise not before both
        minimums (``min_iterations`` calls and ``min_seconds``), and then, with
        :attr:`target_ci`, only once ``half_width()`` (the relative half-width of the 95%
        interval that matters: a speedup's, or a lone stack's median latency) is within it.

        ``calls`` are the timed calls of the arm with the fewest, ``elapsed_s`` the timed
        seconds so far; ``half_width`` is called only when needed (None: no interval can be had,
        as with fewer than 3 calls, and the minimums decide).
        """
        if calls >= self.max_iterations or (calls >= self.min_iterations and elapsed_s >= self.max_seconds):
            return True
        if calls < self.min_iterations or elapsed_s < self.min_seconds:
            return False
        if self.target_ci is None:
            return True
        return half_width is None or half_width() <= self.target_ci

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved with every record.

    Attributes:
        model: registry name, ``arch:<family>[@tiny]`` or ``hf:<id or path>``.
        strategies: stack specs; the reference (``baseline``) is always measured first.
        device: ``cpu``, ``cuda``, ``cuda:1``...
        batch_size: images per generation call in the timed loop.
        steps: denoising steps of the reference (None: the model's default).
        timing: warm-up and stop rule.
        quality_images: images generated (apart from the timed loop) for quality metrics;
            None: the model's default (:func:`default_quality_images`).
        seed: seed of the first image; image i uses seed + i.
        sample_interval_s: sampler polling interval.
        out_dir: the run directory.
        quality: settings of the distribution and hub quality metrics.
        resolution: (height, width) to generate at; None: the model's own.
        schedule: ``auto`` (interleaved when every stack fits in memory at once, else
            sequential, with the reason), ``interleaved`` or ``sequential``.
        block: interleaved: calls of one stack in a row within a round.
        threads: torch's intra-op threads (None: torch's default, one per core).
        count_flops: count parameters and FLOPs per step/token of every stack.
        recheck_baseline: sequential: time the reference again at the end to expose drift.
        measure_reference: time the reference stack too (speedups need it); the quality
            reference images come from the unchanged model either way.
        baseline_src: another accelbench code tree: every stack is measured twice, in worker
            processes importing each tree, interleaved (code against code).
        current_src: the tree of the current side of ``baseline_src`` runs (None: the tree
            of the working directory if it is one, else the installed package's).
        quality_batch_size: images per call when generating the quality images (None: the
            timed batch size; every image has its own seed, so it does not change them).
        dtype: the dtype the model is loaded in (``fp32``, ``bf16``, ``fp16``; None: the
            model's default on the device: :func:`bench.models.registry.default_dtype`).
    """

    model: str = DEFAULT_MODEL
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    device: str = "cpu"
    batch_size: int = 8
    steps: int | None = None
    timing: TimingConfig = field(default_factory=TimingConfig)
    quality_images: int | None = None
    seed: int = 0
    sample_interval_s: float = SAMPLE_INTERVAL_S
    out_dir: Path = Path("runs/latest")
    trust_remote_code: bool = False
    allow_download: bool = False
    use_cache: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)
    resolution: tuple[int, int] | None = None
    schedule: str = "auto"
    block: int = 1
    threads: int | None = None
    count_flops: bool = True
    recheck_baseline: bool = True
    measure_reference: bool = True
    baseline_src: str | None = None
    current_src: str | None = None
    quality_batch_size: int | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.quality_images is not None and self.quality_images < 0:
            raise ConfigError(f"quality images must be >= 0, got {self.quality_images}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.block < 1:
            raise ConfigError(f"block must be >= 1, got {self.block}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if not self.strategies:
            raise ConfigError("a run needs at least one strategy stack")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name, src in (("baseline source", self.baseline_src), ("current source", self.current_src)):
            if src is not None and not (Path(src) / "bench").is_dir():
                raise ConfigError(f"{name} {src!r} has no bench/ package: not an accelbench tree")
        if self.baseline_src is not None and self.schedule == "sequential":
            raise ConfigError("code against code (baseline_src) is always interleaved")

    def for_model(self, model: Any) -> RunConfig:
        """This config with the model's defaults filled in (``quality_images``)."""
        if self.quality_images is not None:
            return self
        return replace(self, quality_images=default_quality_images(bool(getattr(model, "random_weights", False))))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


__all__ = [
    "COMPARED_SETTINGS", "DEFAULT_MODEL", "DEFAULT_STRATEGIES", "SAMPLE_INTERVAL_S", "DTYPES", "PROTOCOL_WARMUP", "QUALITY_IMAGES", "RANDOM_WEIGHT_QUALITY_IMAGES",
    "SCHEDULES", "RunConfig", "TimingConfig", "default_quality_images", "parse_resolution",
    "warmup_caveat",
]
