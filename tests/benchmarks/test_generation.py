"""The pytest-benchmark suite: every embedded model x the main strategies, small enough for CI.

    pytest tests/benchmarks --benchmark-enable --benchmark-json=bench.json
    accelbench gate bench.json --baseline main-bench.json --quality psnr:-1

Each benchmark times one generation call (pedantic: warm-up rounds, then fixed rounds of
one call) and records quality, memory and energy in ``extra_info``. Without
``--benchmark-enable`` (the project's pytest configuration disables benchmarks) every case
still runs once and is scored: a smoke test of each strategy. Stacks that do not apply to a
model are skipped with the reason. ``--accelbench-rounds N`` and friends shrink or grow it.
"""

from __future__ import annotations

import math

import pytest

#: The main strategies: precision, fewer steps, a faster solver with fewer steps.
STRATEGIES = (
    "baseline",
    "bf16",
    "steps:n=10",
    "scheduler:name=dpm-solver+steps:n=10",
    "bf16+steps:n=10",
)


def _embedded_models() -> list[str]:
    from bench.models.registry import list_models

    return [info.name for info in list_models(include_arch=False)]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", _embedded_models())
def test_generation(generation_benchmark, model, strategy):
    result = generation_benchmark(model, strategy, batch_size=2, rounds=5, warmup_rounds=2,
                                  quality_images=16)
    info = result.extra_info
    assert info["model"] == model and info["strategy"] == result.strategy
    for name, value in result.quality.items():
        assert name in result.quality_meta, f"{name} has no declared direction"
        assert not math.isnan(value), f"{name} is NaN"
    if strategy == "baseline":
        assert result.quality["psnr"] == math.inf
    if "adherence" in result.quality:
        assert 0 <= result.quality["adherence"] <= 1
