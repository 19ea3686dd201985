"""channels-last, attention backend and fused QKV: the model computes the same function,
changed the way each strategy says, and unavailable choices are refused with the reason."""

from __future__ import annotations

import pytest
import torch

from strategies import StrategyError, parse_stack
from strategies.attention import Attention
from strategies.attention import Config as AttentionConfig
from strategies.channels_last import ChannelsLast
from strategies.fused_qkv import FusedQKV
from tests.support.sdpa import kernels_seen
from tests.support.tiny_diffusion import PROMPTS, SEEDS, tiny_dit, tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(steps=3)


@pytest.fixture(scope="module")
def unet_baseline(unet):
    return unet.generate(PROMPTS, SEEDS)


def test_channels_last_converts_conv_weights(unet, unet_baseline):
    model = ChannelsLast().apply(unet.clone())
    weight = model.denoiser.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert model.notes["channels_last"]["conv_layers"] > 10
    torch.testing.assert_close(model.generate(PROMPTS, SEEDS), unet_baseline, atol=1e-4, rtol=0)


def test_fused_qkv_fuses_and_keeps_the_function(unet, unet_baseline):
    model = FusedQKV().apply(unet.clone())
    attn = model.denoiser.down_blocks[1].attentions[0].transformer_blocks[0]
    assert hasattr(attn.attn1, "to_qkv") and hasattr(attn.attn2, "to_kv")
    assert type(attn.attn1.processor).__name__ == "FusedAttnProcessor2_0"
    torch.testing.assert_close(model.generate(PROMPTS, SEEDS), unet_baseline, atol=1e-4, rtol=0)


def test_fused_qkv_on_the_dit():
    model = tiny_dit(steps=2)
    base = model.generate(PROMPTS, SEEDS)
    fused = FusedQKV().apply(model.clone())
    assert fused.notes["fused_qkv"]["attention_modules_fused"] == 2 * 3
    torch.testing.assert_close(fused.generate(PROMPTS, SEEDS), base, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_attention_backend_is_the_only_kernel_used(unet, unet_baseline, backend):
    model = Attention(AttentionConfig(backend=backend)).apply(unet.clone())
    seen, images = kernels_seen(model, lambda: model.generate(PROMPTS, SEEDS))
    expected = (True, False) if backend == "math" else (False, True)
    assert seen and set(seen) == {expected}
    torch.testing.assert_close(images, unet_baseline, atol=1e-4, rtol=0)


def test_cuda_only_backends_are_refused_on_the_cpu(unet):
    for backend in ("efficient", "cudnn"):
        reason = Attention(AttentionConfig(backend=backend)).supports_device("cpu")
        assert reason and "CUDA" in reason
    with pytest.raises(StrategyError, match="one of math, flash, efficient, cudnn"):
        parse_stack("attention:backend=xformers")


def test_defaults_and_stacking():
    assert parse_stack("attention").spec == "attention:backend=flash"
    assert parse_stack("fused-qkv+channels-last+attention:backend=math+compile").spec.endswith("compile:mode=default")
    with pytest.raises(StrategyError, match="twice"):
        parse_stack("attention:backend=math+attention")
