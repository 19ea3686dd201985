"""``offload``: group offloading of the denoiser (to disk on the CPU) gives the same images
while the stack holds its grouped weights on disk between uses; model offload says why it
cannot run on the CPU; the positional spec ``offload:group``."""

from __future__ import annotations

import os

import pytest
import torch

from bench.models.sharing import weight_bytes
from strategies import StrategyError, parse_stack, parse_strategy
from tests.support.arch import generate, tiny
from tests.support.tiny_diffusion import PROMPTS, SEEDS, tiny_dit, tiny_unet


def _same_images(got: torch.Tensor, expected: torch.Tensor) -> None:
    """The same images up to float rounding: the weights read back are the same bits, but
    CPU kernels may sum in another order for tensors at other addresses (seen: 1.3e-6 on
    arch:flux@tiny)."""
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def _apply(spec: str, model):
    stack = parse_stack(spec)
    stack.check(model)
    return stack.apply(model.clone())


def test_the_mode_comes_first_without_its_key():
    assert parse_strategy("offload:group,blocks=2").spec == "offload:group,blocks=2"
    assert parse_strategy("offload:mode=model").spec == "offload:model"
    assert parse_strategy("offload").spec == "offload:group"
    with pytest.raises(StrategyError, match="mode"):
        parse_strategy("offload:disk")


@pytest.mark.parametrize("level", ["blocks", "leaf"])
@pytest.mark.parametrize("make", [tiny_dit, tiny_unet], ids=["dit", "unet"])
def test_group_offloading_to_disk_gives_the_same_images_and_holds_less(make, level):
    model = make()
    baseline = model.generate(PROMPTS, SEEDS)
    offloaded = _apply(f"offload:group,level={level}", model)
    folder = offloaded.denoiser._accelbench_offload_dir
    assert any(f.endswith(".safetensors") for f in os.listdir(folder))
    at_rest = weight_bytes(offloaded.denoiser)
    assert at_rest < 0.5 * weight_bytes(model.denoiser)
    for _ in range(2):  # read back from disk every call, released again after
        _same_images(offloaded.generate(PROMPTS, SEEDS), baseline)
        assert weight_bytes(offloaded.denoiser) == at_rest
    # the loaded model keeps its weights
    assert torch.equal(model.generate(PROMPTS, SEEDS), baseline)


def test_group_offloading_on_an_arch_model():
    model = tiny("flux")
    offloaded = _apply("offload:group,blocks=2", model)
    _same_images(generate(offloaded, steps=2), generate(model, steps=2))


def test_what_the_cpu_cannot_do_is_said_in_words():
    model = tiny_dit()
    assert "nowhere to offload" in parse_strategy("offload:model").supports(model)
    assert "CUDA stream" in parse_strategy("offload:group,stream=true").supports(model)
    with pytest.raises(StrategyError, match="safetensors"):
        parse_stack("quant+offload").check(model)
