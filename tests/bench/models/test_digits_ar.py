"""digits-ar: tokenization against bench.data, generation contract, step callbacks, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models import digits_ar
from bench.models.digits_ar import (
    IMAGE_TOKENS,
    PROMPT_TOKEN_OFFSET,
    images_to_tokens,
    prompt_token,
    raw_split,
    sequences,
    tokens_to_images,
)
from tests.support.tiny_ar import tiny_model


@pytest.fixture(scope="module")
def shipped():
    from bench.models import load_model

    return load_model("digits-ar")


# -- tokenization ---------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["generator", "heldout"])
def test_decoded_tokens_are_exactly_bench_data_images(split):
    from bench.data import load_split

    images8, labels = raw_split(split)
    decoded = tokens_to_images(images_to_tokens(images8))
    real = load_split(split)
    assert torch.equal(decoded, torch.from_numpy(real.images.copy()))
    assert np.array_equal(labels, real.labels)


def test_sequences_are_prompt_token_then_64_pixel_tokens():
    seqs, labels = sequences("generator")
    assert seqs.shape == (1000, 1 + IMAGE_TOKENS)
    assert torch.equal(seqs[:, 0], labels + PROMPT_TOKEN_OFFSET)
    assert seqs[:, 1:].min() >= 0 and seqs[:, 1:].max() <= 16


def test_prompt_tokens_and_bad_input():
    assert prompt_token("a handwritten 3") == PROMPT_TOKEN_OFFSET + 3
    with pytest.raises(ValueError, match="names none"):
        prompt_token("a cat")
    with pytest.raises(ValueError, match="0..16"):
        images_to_tokens(np.full((1, 8, 8), 17))
    with pytest.raises(ValueError, match="0..16"):
        images_to_tokens(np.full((1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="prompt token"):
        tokens_to_images(torch.full((1, 64), PROMPT_TOKEN_OFFSET))


# -- the generation contract ------------------------------------------------------------------
def test_greedy_is_deterministic_and_batched_equals_one_by_one():
    model = tiny_model()
    prompts, _ = model.prompts(2)
    a = model.generate(prompts, [0, 1])
    assert a.shape == (2, 1, 16, 16) and a.dtype == torch.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, model.generate(prompts, [5, 6]))  # greedy: seeds do not matter
    assert torch.equal(a, model.generate(prompts, [0, 1], batched=True))


def test_sampling_follows_each_images_own_seed():
    model = tiny_model()
    prompts, _ = model.prompts(3)
    a = model.generate(prompts, [0, 1, 2], do_sample=True)
    assert torch.equal(a, model.generate(prompts, [0, 1, 2], do_sample=True))
    # An image does not depend on the others in the call.
    assert torch.equal(a[1:], model.generate(prompts[1:], [1, 2], do_sample=True))
    assert not torch.equal(a[0], model.generate(prompts[:1], [99], do_sample=True)[0])
    state = torch.get_rng_state()
    model.generate(prompts[:1], [3], do_sample=True)
    assert torch.equal(state, torch.get_rng_state())  # the global generator is left alone


def test_step_callback_fires_once_per_forward_pass_and_counts_are_kept():
    model = tiny_model()
    steps: list[int] = []
    model.generate(["a handwritten 1", "a handwritten 2"], [0, 1], step_callback=steps.append)
    assert steps == list(range(2 * IMAGE_TOKENS))
    decoding = model.notes["decoding"]
    assert decoding["tokens"] == decoding["target_forwards"] == 2 * IMAGE_TOKENS
    assert "acceptance_rate" not in decoding
    assert "decoding" not in model.clone().notes


def test_generate_rejects_bad_calls():
    model = tiny_model()
    with pytest.raises(ValueError, match="seeds"):
        model.generate(["a handwritten 1"], [0, 1])
    with pytest.raises(ValueError, match="unknown generation argument"):
        model.generate(["a handwritten 1"], [0], num_inference_steps=3)
    with pytest.raises(ValueError, match="greedy"):
        model.generate(["a handwritten 1"], [0], batched=True, do_sample=True)


def test_components_and_describe():
    model = tiny_model()
    assert set(model.components()) == {"denoiser"}
    info = model.describe()
    assert info["kind"] == "autoregressive"
    assert info["tokens_per_image"] == IMAGE_TOKENS
    assert info["call_args"]["do_sample"] is False  # the sampling settings are recorded
    with pytest.raises(KeyError):
        model.set_component("unet", model.lm)


# -- the shipped model ------------------------------------------------------------------------
def test_shipped_model_loads_and_generates(shipped):
    from bench.models import get_model_info

    assert get_model_info("digits-ar").kind == "autoregressive"
    assert shipped.kind == "autoregressive"
    assert type(shipped.lm).__name__ == "LlamaForCausalLM"
    config = shipped.lm.config
    assert (config.num_hidden_layers, config.hidden_size) == (8, 256)
    images = shipped.generate(["a handwritten 0", "a handwritten 7"], [0, 1], batched=True)
    assert images.shape == (2, 1, 16, 16)
    assert shipped.classifier() is not None


@pytest.mark.slow
def test_shipped_model_is_recognisable(shipped):
    from bench.quality.adherence import adherence

    prompts, labels = shipped.prompts(100)
    images = shipped.generate(prompts, list(range(100)), batched=True)
    assert adherence(shipped.classifier(), images, labels) >= 0.8


# -- training ---------------------------------------------------------------------------------
def test_training_script_runs_end_to_end(tmp_path):
    from bench.training import train_digits_ar

    out = tmp_path / "ar"
    code = train_digits_ar.main([
        "--layers", "1", "--hidden", "32", "--heads", "2", "--intermediate", "64",
        "--steps", "3", "--batch-size", "8", "--warmup", "1", "--out", str(out),
        "--eval-images", "10", "--min-adherence", "0", "--save-every", "0",
    ])
    assert code == 0
    model = digits_ar.load(directory=out)
    assert model.lm.config.num_hidden_layers == 1
    info = (out / "training_info.json").read_text()
    assert "adherence_greedy" in info and "adherence_sampled_t1" in info
