"""diffusers' cache hooks (FirstBlockCache, TaylorSeer, PAB, FasterCache) on the DiT: what they
skip, that their neutral settings are the plain model, that state resets between
generations, and the stack rules around them."""

from __future__ import annotations

import pytest
import torch

from strategies import StrategyError, get_strategy, parse_stack
from tests.support.tiny_diffusion import PROMPTS, SEEDS, count_calls, tiny_dit, tiny_unet

CACHES = ("fbcache", "taylorseer", "pab", "fastercache")


@pytest.fixture(scope="module")
def dit():
    return tiny_dit(steps=6)


@pytest.fixture(scope="module")
def baseline(dit):
    return dit.generate(PROMPTS, SEEDS)


def _apply(spec: str, model):
    stack = parse_stack(spec)
    stack.check(model)
    return stack.apply(model.clone())


@pytest.mark.parametrize("name", CACHES)
def test_each_cache_runs_with_defaults_and_resets_between_generations(name, dit, baseline):
    model = _apply(name, dit)
    assert model.denoiser.is_cache_enabled
    first = model.generate(PROMPTS, SEEDS)
    second = model.generate(PROMPTS, SEEDS)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)  # the hooks' state was reset after the first call


@pytest.mark.parametrize("spec", ["fbcache:threshold=0", "taylorseer:interval=1", "pab:spatial=1,cross=1"])
def test_neutral_settings_reproduce_the_baseline(spec, dit, baseline):
    assert torch.equal(_apply(spec, dit).generate(PROMPTS, SEEDS), baseline)


def test_fbcache_skips_the_remaining_blocks(dit, baseline):
    model = _apply("fbcache:threshold=10", dit)
    blocks = model.denoiser.transformer_blocks
    first, second, last = (count_calls(blocks[i].ff) for i in (0, 1, -1))
    images = model.generate(PROMPTS, SEEDS)
    # The first block runs every step; the rest only on the first (nothing cached yet).
    assert (first[0], second[0], last[0]) == (6, 1, 1)
    assert not torch.equal(images, baseline)


def test_taylorseer_computes_only_on_its_schedule():
    assert get_strategy("taylorseer")().spec == "taylorseer:interval=3"
    model = _apply("taylorseer:interval=5,warmup=3", tiny_dit(steps=10))
    calls = count_calls(model.denoiser.transformer_blocks[0].attn1.to_q)
    model.generate(PROMPTS, SEEDS)
    # Steps 0-2 (warm-up), then every 5th: 4 and 9.
    assert calls[0] == 5


def test_pab_broadcasts_cross_attention_further_than_self_attention(dit):
    model = _apply("pab:spatial=2,cross=6", dit)
    block = model.denoiser.transformer_blocks[0]
    self_calls, cross_calls = count_calls(block.attn1.to_q), count_calls(block.attn2.to_q)
    model.generate(PROMPTS, SEEDS)
    # Timesteps 999, 832 | 666, 499, 332, 166 (inside the 100-800 window): self-attention
    # recomputed on every 2nd step of the window, cross-attention on every 6th.
    assert (self_calls[0], cross_calls[0]) == (4, 2)


def test_fastercache_skips_the_unconditional_half_of_the_batch(dit):
    model = _apply("fastercache", dit)
    sizes: list[int] = []
    model.denoiser.pos_embed.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    model.generate(PROMPTS, SEEDS)
    # 2 images, guidance batched to 4; inside the (-1, 641) window the unconditional half is
    # computed every 5th call only.
    assert sizes == [4, 4, 4, 2, 2, 4]


@pytest.mark.parametrize("name", CACHES)
def test_refused_on_the_unet_with_the_reason(name):
    reason = get_strategy(name)().supports(tiny_unet())
    assert reason and "CacheMixin" in reason and "deepcache" in reason


def test_fastercache_without_guidance_does_not_split_the_batch():
    model = _apply("fastercache", tiny_dit(steps=4, guidance=1.0))
    sizes: list[int] = []
    model.denoiser.pos_embed.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    model.generate(PROMPTS, SEEDS)
    assert sizes == [2, 2, 2, 2]


def test_stack_rules():
    with pytest.raises(StrategyError, match="feature cache"):
        parse_stack("fbcache+pab")
    with pytest.raises(StrategyError, match="feature cache"):
        parse_stack("taylorseer+deepcache")
    stack = parse_stack("compile+steps:n=10+fbcache+bf16")
    assert stack.spec == "bf16+fbcache:threshold=0.1+steps:n=10+compile:mode=default"
    assert parse_stack("steps:n=10+fbcache+compile+bf16").spec == stack.spec
    for name in CACHES:
        assert get_strategy(name)().spec.startswith(name)


def test_bad_parameters_say_what_is_allowed():
    with pytest.raises(StrategyError, match="t_low"):
        parse_stack("pab:t_low=900")
    with pytest.raises(StrategyError, match="one of attn, attn-ff, lite"):
        parse_stack("taylorseer:targets=mlp")
