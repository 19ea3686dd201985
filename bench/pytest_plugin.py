"""accelbench's pytest plugin: the ``generation_benchmark`` fixture on top of pytest-benchmark.

Registered through the ``pytest11`` entry point, so it is active wherever accelbench is
installed; it imports nothing heavy until a test uses the fixture. A test writes::

    def test_bf16_steps(generation_benchmark):
        result = generation_benchmark("digits-unet", "bf16+steps:n=10")
        assert result.quality["ssim"] > 0.5

and gets pytest-benchmark's timing of one generation call (pedantic mode: fixed rounds
after untimed warm-up rounds, one call per round, so ``stats.data`` holds one raw latency
per call) with, in ``extra_info``: the model, the canonical strategy spec, the settings,
peak memory and energy sampled during the timed rounds, and quality against the unchanged
model's images of the same prompts and seeds (``quality`` plus ``quality_meta`` with each
metric's ``higher_is_better``). The JSON stays pytest-benchmark's own, so
``pytest-benchmark compare`` reads it, and ``accelbench gate`` reads it too.

Run benchmarks explicitly (the project's pytest configuration disables them by default)::

    pytest tests/benchmarks --benchmark-enable --benchmark-json=bench.json

With benchmarks disabled the fixture still runs the strategy once and scores its quality
(a smoke test). A stack that cannot apply to the model is skipped with the reason.

Options: ``--accelbench-rounds``, ``--accelbench-warmup``, ``--accelbench-device``,
``--accelbench-quality-images`` override what the tests ask for (e.g. small CI settings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.core.formats import sanitize, slug
from bench.core.record import REFERENCE

#: Schema of the plugin's ``extra_info`` block.
EXTRA_SCHEMA = "accelbench.pytest/1"

DEFAULT_ROUNDS = 5
DEFAULT_WARMUP_ROUNDS = 2
DEFAULT_BATCH_SIZE = 2
DEFAULT_QUALITY_IMAGES = 16


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("accelbench", "accelbench generation benchmarks")
    group.addoption("--accelbench-rounds", type=int, default=None,
                    help="timed rounds of every generation_benchmark (overrides the tests')")
    group.addoption("--accelbench-warmup", type=int, default=None,
                    help="warm-up rounds of every generation_benchmark (overrides the tests')")
    group.addoption("--accelbench-device", default=None,
                    help="device of every generation_benchmark (default: the tests' or cpu)")
    group.addoption("--accelbench-quality-images", type=int, default=None,
                    help="quality images of every generation_benchmark (overrides the tests')")
    group.addoption("--accelbench-out", default=None,
                    help="folder for the run directory of every generation_benchmark (default: "
                         "pytest's temporary folder)")


@dataclass
class GenerationResult:
    """What one ``generation_benchmark`` call measured.

    Attributes:
        model: model name.
        strategy: canonical strategy stack spec.
        latencies_s: raw timed latencies (empty when benchmarks are disabled).
        quality: metric -> value (against the unchanged model's images).
        quality_meta: metric -> direction and unit.
        images: the quality images (float NCHW in [0, 1]), or None.
        extra_info: exactly what was put in the benchmark's ``extra_info``.
    """

    model: str
    strategy: str
    latencies_s: list[float] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    quality_meta: dict[str, Any] = field(default_factory=dict)
    images: Any = None
    extra_info: dict[str, Any] = field(default_factory=dict)


class GenerationBenchmark:
    """The callable the ``generation_benchmark`` fixture returns (usable once per test,
    like pytest-benchmark's ``benchmark``)."""

    def __init__(self, benchmark: Any, config: pytest.Config) -> None:
        self.benchmark = benchmark
        self.config = config

    def _opt(self, name: str, value: Any) -> Any:
        override = self.config.getoption(name, None)
        return value if override is None else override

    def __call__(
        self,
        model: str,
        strategy: str = REFERENCE,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        steps: int | None = None,
        rounds: int = DEFAULT_ROUNDS,
        warmup_rounds: int = DEFAULT_WARMUP_ROUNDS,
        quality_images: int = DEFAULT_QUALITY_IMAGES,
        seed: int = 0,
        device: str | None = None,
        distribution_metrics: bool = True,
        quality_batch_size: int | None = None,
    ) -> GenerationResult:
        """Time ``strategy`` on ``model`` and score its quality.

        Args:
            model: registry name or ``hf:<id or path>``.
            strategy: a stack spec (``bf16+steps:n=10``).
            batch_size: images per timed generation call.
            steps: denoising steps of the unchanged model (None: its default).
            rounds: timed rounds (one call each).
            warmup_rounds: untimed rounds first.
            quality_images: images generated (apart from the timing) for quality; 0: none.
            seed: seed of image 0; image i uses seed + i.
            device: ``cpu``, ``cuda``...
            distribution_metrics: also FID/KID against the domain's real images.
            quality_batch_size: images per call when generating the quality images (None:
                ``max(batch_size, 8)``; each image has its own seed, so the batch does not
                change the images).
        """
        from bench.core.config import (  # lazy: the plugin loads in every pytest session; torch only when a benchmark runs
            RunConfig,
            TimingConfig,
        )
        from bench.core.quality_config import (
            QualityConfig,  # lazy: the plugin loads in every pytest session; torch only when a benchmark runs
        )
        from bench.measure.engine import (  # lazy: the plugin loads in every pytest session; torch only when a benchmark runs
            Engine,
            EngineError,
        )
        from bench.models.registry import (  # lazy: the plugin loads in every pytest session; torch only when a benchmark runs
            ModelError,
            check_device,
        )
        from strategies import (  # lazy: the plugin loads in every pytest session; torch only when a benchmark runs
            StrategyError,
            parse_stack,
        )

        rounds = int(self._opt("accelbench_rounds", rounds))
        warmup_rounds = int(self._opt("accelbench_warmup", warmup_rounds))
        quality_images = int(self._opt("accelbench_quality_images", quality_images))
        device = self._opt("accelbench_device", device) or "cpu"
        for name, value, low in (("batch_size", batch_size, 1), ("rounds", rounds, 1),
                                 ("warmup_rounds", warmup_rounds, 0),
                                 ("quality_images", quality_images, 0)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        stack = parse_stack(strategy)
        try:  # a benchmark for a device this machine lacks is skipped, saying why
            check_device(device)
            stack.check_device(device)
        except (ModelError, StrategyError) as exc:
            pytest.skip(str(exc))
        out_dir = self._out_dir(model, stack.spec)
        config = RunConfig(
            model=model, strategies=(stack.spec,), device=device, batch_size=batch_size,
            steps=steps, timing=TimingConfig(warmup=warmup_rounds, min_iterations=rounds,
                                             min_seconds=0, max_iterations=rounds),
            quality_images=quality_images, seed=seed, out_dir=out_dir,
            quality=QualityConfig(noise_floor_seeds=0, distribution_metrics=distribution_metrics),
            quality_batch_size=quality_batch_size or max(batch_size, 8),
            measure_reference=False, count_flops=False,
        )
        schedule = PytestBenchmarkSchedule(self.benchmark, rounds, warmup_rounds)
        try:
            run = Engine(config, show_progress=False, schedule=schedule, keep_images=True).run()
        except EngineError as exc:  # the stack does not apply to the model
            pytest.skip(" ".join(str(exc).split()))
        record = run.records[0]
        if record["status"] != "ok":
            raise RuntimeError(f"{stack.spec} on {model} failed: {record['error']}")
        info = extra_info(record, str(out_dir))
        result = GenerationResult(model=model, strategy=record["strategy"], extra_info=info,
                                  quality=dict(record.get("quality") or {}),
                                  quality_meta=dict(record.get("quality_meta") or {}),
                                  images=run.images.get(record["strategy"]))
        self.benchmark.extra_info.update(sanitize(info))
        if self.benchmark.enabled and self.benchmark.stats is not None:
            result.latencies_s = list(self.benchmark.stats.stats.data)
        return result

    def _out_dir(self, model: str, spec: str) -> Path:
        """Where the engine writes this benchmark's run directory: ``--accelbench-out``, or
        pytest's temporary folder."""

        root = self.config.getoption("accelbench_out", None)
        if root is None:
            root = self.config._tmp_path_factory.getbasetemp() / "accelbench"  # noqa: SLF001
        return Path(root) / slug(f"{model}-{spec}-{time.time_ns()}")


class PytestBenchmarkSchedule:
    """The schedule (see :class:`bench.measure.schedules.Schedule`) of the plugin: pytest-benchmark
    times the one stack. ``benchmark.pedantic`` runs the warm-up rounds, then the timed rounds
    of one call each, so ``stats.data`` holds one raw latency per call; the engine sees the
    same calls' bounds and step times through the arm and attributes its samples to them."""

    name = "pytest-benchmark"
    all_at_once = True

    def __init__(self, benchmark: Any, rounds: int, warmup_rounds: int) -> None:
        self.benchmark = benchmark
        self.rounds = rounds
        self.warmup_rounds = warmup_rounds

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "rounds": self.rounds, "warmup_rounds": self.warmup_rounds,
                "enabled": bool(self.benchmark.enabled)}

    def run(self, arms: Any, timing: Any, hooks: Any = None) -> list[Any]:
        from bench.measure.harness import (
            Timing,  # lazy: the plugin loads in every pytest session; torch only when a benchmark runs
        )

        (arm,) = arms
        calls: list[Any] = []

        def target() -> None:
            calls.append(arm.time(1, timing.sync_steps))

        if hooks is not None and hooks.before_block:
            hooks.before_block(0)
        self.benchmark.pedantic(target, rounds=self.rounds, warmup_rounds=self.warmup_rounds,
                                iterations=1)
        if hooks is not None and hooks.after_block:
            hooks.after_block(0)
        out = Timing()
        # With benchmarks disabled pytest-benchmark runs the target once and times nothing.
        warm = calls if not self.benchmark.enabled else calls[:self.warmup_rounds]
        for c in warm:
            out.warmup_bounds += c.bounds
            out.warmup_s += c.latencies_s
        out.first_call_s = out.warmup_s[0] if out.warmup_s else None
        for c in calls[len(warm):]:
            out.add(c)
        return [out]


def extra_info(record: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """The benchmark's ``extra_info`` from the engine's record."""
    settings = dict(record.get("settings") or {})
    schedule = record.get("schedule") or {}
    settings.update(rounds=schedule.get("rounds"), warmup_rounds=schedule.get("warmup_rounds"))
    info: dict[str, Any] = {
        "schema": EXTRA_SCHEMA,
        "model": (record.get("model") or {}).get("name"),
        "strategy": record.get("strategy"),
        "base_fingerprint": (record.get("model") or {}).get("base_fingerprint"),
        "settings": settings,
        "cold": record.get("cold"),
        "memory": record.get("memory"),
        "energy": record.get("energy"),
        "run_dir": run_dir,
    }
    for key in ("quality", "quality_meta", "quality_details", "decoding", "caveats"):
        if record.get(key):
            info[key] = record[key]
    return info


@pytest.fixture
def generation_benchmark(request: pytest.FixtureRequest, benchmark: Any) -> GenerationBenchmark:
    """Benchmark one strategy stack on one model: ``generation_benchmark(model, strategy)``.

    Returns a :class:`GenerationResult`; see :class:`GenerationBenchmark` for the settings.
    """
    return GenerationBenchmark(benchmark, request.config)
