"""no-kv-cache: the uncached run produces the target's tokens, recomputing the past each step."""

from __future__ import annotations

import pytest
import torch

from strategies import StrategyError, parse_stack, parse_strategy
from tests.support.tiny_ar import tiny_model


@pytest.fixture(scope="module")
def shipped():
    from bench.models import load_model

    return load_model("digits-ar")


def test_usable_without_parameters():
    strategy = parse_strategy("no-kv-cache")
    assert strategy.spec == "no-kv-cache"
    with pytest.raises(StrategyError, match="unknown parameter"):
        parse_strategy("no-kv-cache:size=3")


def test_refuses_a_diffusion_model_with_the_reason(digits_unet):
    reason = parse_strategy("no-kv-cache").supports(digits_unet)
    assert reason and "KV cache" in reason and "diffusion" in reason


@pytest.mark.parametrize("other", ["speculative", "zipar", "sjd"])
def test_cannot_be_stacked_with_decoders_that_need_the_cache(other):
    with pytest.raises(StrategyError, match="KV cache"):
        parse_stack(f"no-kv-cache+{other}")


def test_apply_turns_the_cache_off_and_says_so():
    model = parse_stack("no-kv-cache").apply(tiny_model())
    assert model.call_args["use_cache"] is False
    assert model.describe()["call_args"]["use_cache"] is False
    assert model.notes["no-kv-cache"] == {"use_cache": False}


def test_uncached_steps_recompute_the_whole_sequence():
    model = tiny_model()
    lengths: dict[bool, list[int]] = {True: [], False: []}
    for cached in (True, False):
        hook = model.lm.register_forward_hook(
            lambda mod, args, kwargs, out, c=cached: lengths[c].append(kwargs["input_ids"].shape[1]),
            with_kwargs=True,
        )
        model.generate(["a handwritten 4"], [0], use_cache=cached)
        hook.remove()
    assert lengths[True] == [1] * 64  # the prompt, then one new token per step
    assert lengths[False] == list(range(1, 65))  # everything so far, every step
    assert model.notes["decoding"]["forward_passes"] == 128


def test_cache_off_gives_the_same_tokens_as_cache_on_tiny():
    model = tiny_model()
    prompts, _ = model.prompts(3)
    uncached = parse_stack("no-kv-cache").apply(model.clone())
    assert torch.equal(model.generate(prompts, [0, 1, 2]), uncached.generate(prompts, [0, 1, 2]))
    assert torch.equal(
        model.generate(prompts, [0, 1, 2], do_sample=True),
        uncached.generate(prompts, [0, 1, 2], do_sample=True),
    )
    assert torch.equal(
        model.generate(prompts, [0, 1, 2], do_sample=False),
        uncached.generate(prompts, [0, 1, 2], do_sample=False),
    )


def test_cache_off_gives_the_same_tokens_as_cache_on_shipped(shipped):
    prompts = ["a handwritten 2", "a handwritten 9"]
    uncached = parse_stack("no-kv-cache").apply(shipped.clone())
    # Both images in one batch, greedy, with and without the cache.
    assert torch.equal(
        shipped.generate(prompts, [0, 1], do_sample=False),
        uncached.generate(prompts, [0, 1], do_sample=False),
    )
