"""DeepCache: which layers are cached, that non-refresh steps skip them, and that interval 1
is the plain UNet bit for bit."""

from __future__ import annotations

import pytest
import torch

from strategies import StrategyError, parse_stack
from strategies.deepcache import Config, DeepCache, plan, skip_connections
from tests.support.tiny_diffusion import PROMPTS, SEEDS, count_calls, tiny_dit, tiny_unet


@pytest.fixture(scope="module")
def unet_model():
    return tiny_unet(steps=6)


@pytest.fixture(scope="module")
def baseline(unet_model):
    return unet_model.generate(PROMPTS, SEEDS)


def test_skip_connections_follow_the_unet(unet_model):
    skips = skip_connections(unet_model.denoiser)
    # digits-unet: conv_in, then per down block one resnet (+attention) and a downsampler.
    assert skips == [
        "conv_in",
        "down_blocks.0.resnets.0",
        "down_blocks.0.downsamplers.0",
        "down_blocks.1.attentions.0",
        "down_blocks.1.downsamplers.0",
        "down_blocks.2.attentions.0",
    ]
    # As many skips as the up path consumes.
    assert len(skips) == sum(len(b.resnets) for b in unet_model.denoiser.up_blocks)


def test_plan_branch_0_keeps_only_the_shallowest_path(unet_model):
    paths = [layer.path for layer in plan(unet_model.denoiser, 0)]
    assert paths == [
        "down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block",
        "up_blocks.0", "up_blocks.1", "up_blocks.2.resnets.0",
    ]
    deepest = [layer.path for layer in plan(unet_model.denoiser, 5)]
    assert deepest == ["mid_block"]


def test_branch_out_of_range_is_refused(unet_model):
    reason = DeepCache(Config(branch=6)).supports(unet_model)
    assert reason and "out of range" in reason and "0..5" in reason


def test_interval_1_reproduces_the_baseline_exactly(unet_model, baseline):
    model = DeepCache(Config(interval=1)).apply(unet_model.clone())
    assert torch.equal(model.generate(PROMPTS, SEEDS), baseline)
    assert model.denoiser._accelbench_deepcache.partial_calls == 0


def test_non_refresh_steps_skip_the_deep_layers(unet_model, baseline):
    model = DeepCache(Config(interval=3, branch=0)).apply(unet_model.clone())
    unet = model.denoiser
    deep = {
        "mid": count_calls(unet.mid_block.resnets[0].conv1),
        "down1": count_calls(unet.down_blocks[1].resnets[0].conv1),
        "up0": count_calls(unet.up_blocks[0].resnets[0].conv1),
        "up2.resnet0": count_calls(unet.up_blocks[2].resnets[0].conv1),
    }
    shallow = {
        "conv_in": count_calls(unet.conv_in),
        "up2.resnet1": count_calls(unet.up_blocks[2].resnets[1].conv1),
        "conv_out": count_calls(unet.conv_out),
    }
    images = model.generate(PROMPTS, SEEDS)
    # 6 steps, one UNet call each (guidance is batched); refresh at steps 0 and 3.
    assert {k: v[0] for k, v in deep.items()} == dict.fromkeys(deep, 2)
    assert {k: v[0] for k, v in shallow.items()} == dict.fromkeys(shallow, 6)
    state = unet._accelbench_deepcache
    assert (state.calls, state.partial_calls) == (6, 4)
    assert state.skipped == [layer.path for layer in plan(unet, 0)]  # the last (partial) step
    assert not torch.equal(images, baseline)
    assert torch.isfinite(images).all()


def test_every_generation_starts_with_a_refresh(unet_model):
    model = DeepCache(Config(interval=4)).apply(unet_model.clone())
    first = model.generate(PROMPTS, SEEDS)
    second = model.generate(PROMPTS, SEEDS)
    assert torch.equal(first, second)
    # A different batch size right after: step 0 refreshes, so no stale-shape cache is used.
    assert model.generate(PROMPTS[:1], SEEDS[:1]).shape == (1, 1, 16, 16)


def test_a_swapped_scheduler_is_followed(unet_model):
    model = parse_stack("deepcache:interval=2+scheduler:name=dpm-solver").apply(unet_model.clone())
    model.generate(PROMPTS, SEEDS)
    state = model.denoiser._accelbench_deepcache
    assert (state.calls, state.partial_calls) == (6, 3)


def test_refused_on_a_transformer_with_the_reason():
    reason = DeepCache().supports(tiny_dit())
    assert reason and "UNet" in reason and "fbcache" in reason


def test_two_caches_are_refused_in_one_stack():
    with pytest.raises(StrategyError, match="feature cache"):
        parse_stack("deepcache+fbcache")


def test_defaults_and_spec():
    assert DeepCache().spec == "deepcache:interval=3"
    assert parse_stack("deepcache:interval=5,branch=1").spec == "deepcache:branch=1,interval=5"
    with pytest.raises(StrategyError):
        parse_stack("deepcache:interval=0")
