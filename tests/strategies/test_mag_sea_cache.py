"""diffusers' MagCache (calibrated once per model) and SeaCache on the tiny DiT and the tiny
arch models: they generate images of the right shape, skip block computations, stay close to
the plain model, calibrate once, and refuse what they cannot hook with a reason."""

from __future__ import annotations

import pytest
import torch

from strategies import get_strategy, parse_stack
from strategies.caches import magcache
from tests.support.tiny_diffusion import PROMPTS, SEEDS, count_calls, tiny_dit, tiny_unet

STEPS = 10


@pytest.fixture(scope="module")
def dit():
    return tiny_dit(steps=STEPS)


@pytest.fixture(scope="module")
def baseline(dit):
    return dit.generate(PROMPTS, SEEDS)


def _apply(spec: str, model):
    stack = parse_stack(spec)
    stack.check(model)
    return stack.apply(model.clone())


@pytest.mark.parametrize("spec", ["magcache:threshold=0.5", "seacache:threshold=2"])
def test_skips_blocks_and_stays_close_to_the_baseline(spec, dit, baseline):
    model = _apply(spec, dit)
    calls = count_calls(model.denoiser.transformer_blocks[1].ff)
    images = model.generate(PROMPTS, SEEDS)
    assert images.shape == baseline.shape
    assert torch.isfinite(images).all()
    assert 0 < calls[0] < STEPS  # some steps reused the cached residual
    assert not torch.equal(images, baseline)
    assert (images - baseline).abs().max() < 0.1
    assert torch.equal(model.generate(PROMPTS, SEEDS), images)  # state reset between generations


@pytest.mark.parametrize("spec", ["magcache:threshold=0", "seacache:threshold=0"])
def test_threshold_zero_reproduces_the_baseline(spec, dit, baseline):
    assert torch.equal(_apply(spec, dit).generate(PROMPTS, SEEDS), baseline)


def test_magcache_calibrates_once_and_records_the_cost(dit):
    magcache._RATIOS.clear()
    first = _apply("magcache", dit)
    notes = first.notes["magcache"]
    assert notes["calibration_cached"] is False and notes["calibration_s"] > 0
    assert len(notes["mag_ratios"]) == STEPS
    assert first.notes["cold"] == {"training_s": notes["calibration_s"], "cache_hit": False}
    # The calibration pass's hooks are gone: only the inference config is enabled.
    assert not first.denoiser._cache_config.calibrate
    second = _apply("magcache", dit)
    assert second.notes["magcache"]["calibration_cached"] is True
    assert second.notes["cold"]["cache_hit"] is True


@pytest.mark.parametrize("name", ["magcache", "seacache"])
def test_refuses_a_unet_with_a_reason(name):
    reason = get_strategy(name)().supports(tiny_unet(steps=4))
    assert reason and "UNet2DConditionModel" in reason and "deepcache" in reason


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("magcache", "sd3"),
        ("magcache", "flux"),
        ("magcache", "pixart-sigma"),
        ("seacache", "sd3"),
        ("seacache", "pixart-sigma"),
    ],
)
def test_arch_tiny_models_skip_blocks(name, arch):
    from bench.models.registry import load_model

    model = load_model(f"arch:{arch}@tiny")
    base = model.generate(["a cat"], [0])
    cached = _apply(f"{name}:threshold=5", model)
    _, blocks = [
        (n, b) for n, b in cached.denoiser.named_children() if isinstance(b, torch.nn.ModuleList)
    ][0]
    calls = count_calls(blocks[1].ff)  # inside the block: a skipped block still "runs" its hook
    images = cached.generate(["a cat"], [0])
    assert images.shape == base.shape and torch.isfinite(images).all()
    assert 0 < calls[0] < model.steps


@pytest.mark.parametrize(
    ("name", "arch", "words"),
    [
        ("magcache", "sana", "TransformerBlockRegistry"),
        ("seacache", "sana", "TransformerBlockRegistry"),
        ("seacache", "flux", "packed tokens"),
    ],
)
def test_refuses_unhookable_arch_models_with_a_reason(name, arch, words):
    from bench.models.registry import load_model

    assert words in get_strategy(name)().supports(load_model(f"arch:{arch}@tiny"))
