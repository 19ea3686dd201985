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
from typing import Any

import pytest

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


class _SessionCache:
    """Loaded models and reference images, shared by every test of the session."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], tuple[Any, float]] = {}
        self.references: dict[tuple, Any] = {}
        self.suites: dict[tuple[str, str], Any] = {}
        self.fingerprints: dict[tuple, str] = {}

    def fingerprint(self, name: str, device: str, steps: int | None, model: Any) -> str:
        """The model's weights-and-settings hash (hashing a hub model's weights takes time)."""
        key = (name, device, steps)
        if key not in self.fingerprints:
            self.fingerprints[key] = model.fingerprint()
        return self.fingerprints[key]

    def model(self, name: str, device: str) -> tuple[Any, float]:
        key = (name, device)
        if key not in self.models:
            from bench.models import load_model
            from bench.models.base import ModelSpec

            t0 = time.perf_counter()
            model = load_model(ModelSpec(name, device=device))
            self.models[key] = (model, time.perf_counter() - t0)
        return self.models[key]


_CACHE_KEY = pytest.StashKey[_SessionCache]()


def _session_cache(config: pytest.Config) -> _SessionCache:
    if _CACHE_KEY not in config.stash:
        config.stash[_CACHE_KEY] = _SessionCache()
    return config.stash[_CACHE_KEY]


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
        strategy: str = "baseline",
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
        import torch

        from bench.samplers import make_sampler
        from strategies import parse_stack

        rounds = int(self._opt("accelbench_rounds", rounds))
        warmup_rounds = int(self._opt("accelbench_warmup", warmup_rounds))
        quality_images = int(self._opt("accelbench_quality_images", quality_images))
        device = self._opt("accelbench_device", device) or "cpu"
        for name, value, low in (("batch_size", batch_size, 1), ("rounds", rounds, 1),
                                 ("warmup_rounds", warmup_rounds, 0),
                                 ("quality_images", quality_images, 0)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")

        from bench.models.registry import ModelError, check_device
        from strategies import StrategyError

        stack = parse_stack(strategy)
        try:  # a benchmark for a device this machine lacks is skipped, saying why
            check_device(device)
            stack.check_device(device)
        except (ModelError, StrategyError) as exc:
            pytest.skip(str(exc))
        cache = _session_cache(self.config)
        loaded, load_s = cache.model(model, device)
        base = loaded.clone() if steps is not None else loaded
        if steps is not None:
            base.call_args["num_inference_steps"] = steps
        for s in stack:
            reason = s.supports(base)
            if reason:
                pytest.skip(f"{s.spec} does not apply to {model}: {reason}")
        t0 = time.perf_counter()
        candidate = stack.apply(base.clone())
        apply_s = time.perf_counter() - t0

        prompts, _ = candidate.prompts(batch_size)
        seeds = [seed + i for i in range(batch_size)]
        bounds: list[tuple[float, float]] = []

        def target() -> None:
            from bench.harness import clock, synchronize

            synchronize(candidate.device)
            t_start = clock()
            with torch.inference_mode():
                candidate.generate(prompts, seeds)
            synchronize(candidate.device)
            bounds.append((t_start, clock()))

        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        sampler = make_sampler(device)
        with sampler:
            self.benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        timed = bounds[warmup_rounds:] if self.benchmark.enabled else []
        cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
        memory, energy = _memory_energy(sampler, timed, batch_size, cuda_peak)

        fingerprint = cache.fingerprint(model, device, steps, base)
        info: dict[str, Any] = {
            "schema": EXTRA_SCHEMA,
            "model": model,
            "strategy": stack.spec,
            "base_fingerprint": fingerprint,
            "settings": {
                "device": device,
                "batch_size": batch_size,
                "steps": candidate.steps,
                "dtype": str(candidate.dtype).replace("torch.", ""),
                "seed": seed,
                "rounds": rounds,
                "warmup_rounds": warmup_rounds,
                "quality_images": quality_images,
            },
            "cold": {"load_s": load_s, "apply_s": apply_s,
                     "first_call_s": bounds[0][1] - bounds[0][0] if bounds else None},
            "memory": memory,
            "energy": energy,
        }
        result = GenerationResult(model=model, strategy=stack.spec, extra_info=info)
        if quality_images:
            scored, images = self._quality(cache, base, candidate, stack.is_baseline, model,
                                           device, quality_batch_size or max(batch_size, 8),
                                           quality_images, seed, distribution_metrics, fingerprint)
            info.update(scored)
            result.quality = scored["quality"]
            result.quality_meta = scored["quality_meta"]
            result.images = images
        self.benchmark.extra_info.update(_plain(info))
        if self.benchmark.enabled and self.benchmark.stats is not None:
            result.latencies_s = list(self.benchmark.stats.stats.data)
        return result

    def _quality(self, cache: _SessionCache, base: Any, candidate: Any, is_baseline: bool,
                 model: str, device: str, batch_size: int, n: int, seed: int,
                 distribution: bool, fingerprint: str) -> tuple[dict[str, Any], Any]:
        from bench.interleave import score_quality

        prompts, labels = base.prompts(n)
        seeds = [seed + i for i in range(n)]
        key = (model, device, fingerprint, n, seed, batch_size)
        if key not in cache.references:
            cache.references[key] = _generate(base, prompts, seeds, batch_size)
        reference = cache.references[key]
        images = reference if is_baseline else _generate(candidate, prompts, seeds, batch_size)
        suite = None
        if distribution and n >= 2:
            skey = (model, device)
            if skey not in cache.suites:
                from bench.quality.config import QualityConfig
                from bench.quality.suite import QualitySuite

                cache.suites[skey] = QualitySuite(base, QualityConfig(noise_floor_seeds=0),
                                                  hub=model.startswith("hf:"))
            suite = cache.suites[skey]
        return score_quality(base, images, reference, labels, suite, prompts), images


def _generate(model: Any, prompts: list[str], seeds: list[int], batch_size: int) -> Any:
    import torch

    chunks = []
    for i in range(0, len(prompts), batch_size):
        with torch.inference_mode():
            chunks.append(model.generate(prompts[i:i + batch_size], seeds[i:i + batch_size]))
    return torch.cat(chunks).float()


def _memory_energy(sampler: Any, timed: list[tuple[float, float]], batch_size: int,
                   cuda_peak: float | None = None):
    """The record-shaped ``memory`` and ``energy`` of the timed rounds."""
    from bench.runner import Runner

    if not timed:
        reason = "benchmarks disabled: nothing was timed"
        return ({"peak_mb": None, "reason": reason},
                {"energy_j": None, "method": "unavailable", "reason": reason})
    window = (timed[0][0], timed[-1][1])
    result = sampler.result(window=window, images=len(timed) * batch_size, bounds=timed)
    return Runner._memory(result, cuda_peak), Runner._energy(result)


def _plain(value: Any) -> Any:
    """JSON-safe copy: infinities become strings (as in accelbench's records)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else "nan"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@pytest.fixture
def generation_benchmark(request: pytest.FixtureRequest, benchmark: Any) -> GenerationBenchmark:
    """Benchmark one strategy stack on one model: ``generation_benchmark(model, strategy)``.

    Returns a :class:`GenerationResult`; see :class:`GenerationBenchmark` for the settings.
    """
    return GenerationBenchmark(benchmark, request.config)
