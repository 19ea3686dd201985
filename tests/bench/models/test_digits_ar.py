"""digits-ar: tokenization against bench.models.digits.data, generation contract, step callbacks, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.digits import ar as digits_ar
from bench.models.digits.ar import (
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
    from bench.models.digits.data import load_split

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
def test_greedy_equals_transformers_generate_token_for_token():
    model = tiny_model()
    prompts, _ = model.prompts(6)
    ours = model.generate(prompts, list(range(6)), do_sample=False)
    ids = torch.tensor([[prompt_token(p)] for p in prompts])
    with torch.no_grad():
        reference = model.lm.generate(ids, do_sample=False)[:, 1:]  # transformers' own loop
    assert torch.equal(ours, tokens_to_images(reference))


def test_greedy_is_deterministic_and_batched_equals_one_by_one():
    model = tiny_model()
    prompts, _ = model.prompts(3)
    a = model.generate(prompts, [0, 1, 2], do_sample=False)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, model.generate(prompts, [5, 6, 7], do_sample=False))  # seeds unused
    assert torch.equal(a, model.generate(prompts, [0, 1, 2], do_sample=False, batched=False))


def test_sampling_is_the_default_and_follows_each_images_own_seed():
    model = tiny_model()
    assert model.call_args["do_sample"] is True
    prompts, _ = model.prompts(3)
    a = model.generate(prompts, [0, 1, 2])
    assert torch.equal(a, model.generate(prompts, [0, 1, 2]))
    assert torch.equal(a, model.generate(prompts, [0, 1, 2], batched=False))
    # An image does not depend on the others in the call.
    assert torch.equal(a[1:], model.generate(prompts[1:], [1, 2]))
    assert not torch.equal(a[0], model.generate(prompts[:1], [99])[0])
    state = torch.get_rng_state()
    model.generate(prompts[:1], [3])
    assert torch.equal(state, torch.get_rng_state())  # the global generator is left alone


def test_top_k_one_is_greedy():
    model = tiny_model()
    prompts, _ = model.prompts(2)
    assert torch.equal(model.generate(prompts, [0, 1], top_k=1),
                       model.generate(prompts, [0, 1], do_sample=False))


def test_step_callback_fires_once_per_forward_pass_and_counts_are_kept():
    model = tiny_model()
    steps: list[int] = []
    model.generate(["a handwritten 1", "a handwritten 2"], [0, 1], step_callback=steps.append)
    assert steps == list(range(IMAGE_TOKENS))  # both images advance in the same passes
    decoding = model.notes["decoding"]
    assert decoding == {
        "decoder": "autoregressive", "tokens": 2 * IMAGE_TOKENS, "images": 2,
        "forward_passes": IMAGE_TOKENS, "image_forward_passes": 2 * IMAGE_TOKENS,
        "forward_passes_per_image": 64.0, "tokens_per_forward": 1.0,
    }
    model.generate(["a handwritten 3"], [0], batched=False)
    assert model.notes["decoding"]["images"] == 3  # counts accumulate over calls
    assert "decoding" not in model.clone().notes
    import json

    json.dumps(model.notes["decoding"])


def test_generate_rejects_bad_calls():
    model = tiny_model()
    with pytest.raises(ValueError, match="seeds"):
        model.generate(["a handwritten 1"], [0, 1])
    with pytest.raises(ValueError, match="unknown generation argument"):
        model.generate(["a handwritten 1"], [0], num_inference_steps=3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(["a handwritten 1"], [0], temperature=0)


def test_components_protocol_and_describe():
    model = tiny_model()
    assert set(model.components()) == {"denoiser"}
    assert model.token_grid == (8, 8) and model.tokens_per_image == IMAGE_TOKENS
    assert model.decoding_reason() is None
    info = model.describe()
    assert info["kind"] == "autoregressive"
    assert info["tokens_per_image"] == IMAGE_TOKENS
    assert info["decoder"] == {"decoder": "autoregressive"}
    assert info["call_args"]["do_sample"] is True  # the sampling settings are recorded
    batch = next(model.token_batches(4, seed=0))
    assert batch.shape == (4, 1 + IMAGE_TOKENS)
    with pytest.raises(KeyError):
        model.set_component("unet", model.lm)


def test_roles_are_asked_through_the_protocols(digits_unet):
    from bench.models.base import decoding_reason, has_data, has_token_data, has_tokens

    model = tiny_model()
    assert has_tokens(model) and has_token_data(model) and has_data(model)
    assert decoding_reason(model) is None
    assert not has_tokens(digits_unet) and not has_token_data(digits_unet)
    assert has_data(digits_unet)
    assert "does not generate image tokens" in decoding_reason(digits_unet)
    assert not hasattr(digits_unet, "tokens_per_image")  # flops count per step, not token


# -- the shipped model ------------------------------------------------------------------------
def test_shipped_model_loads_and_generates(shipped):
    from bench.models import get_model_info

    assert get_model_info("digits-ar").kind == "autoregressive"
    assert shipped.kind == "autoregressive"
    assert type(shipped.lm).__name__ == "LlamaForCausalLM"
    config = shipped.lm.config
    assert (config.num_hidden_layers, config.hidden_size) == (8, 256)
    images = shipped.generate(["a handwritten 0", "a handwritten 7"], [0, 1])
    assert images.shape == (2, 1, 16, 16)
    assert shipped.classifier() is not None
    assert shipped.default_draft().config.num_hidden_layers == 2


@pytest.mark.slow
def test_shipped_model_is_recognisable(shipped):
    from bench.quality.adherence import adherence

    prompts, labels = shipped.prompts(100)
    images = shipped.generate(prompts, list(range(100)), do_sample=False)
    assert adherence(shipped.classifier(), images, labels) >= 0.8


@pytest.mark.slow
def test_default_sampled_decoding_keeps_adherence_above_90_percent(shipped):
    """The default call arguments (sampled) on 200 images, in batches of 8 as the benchmark."""
    from bench.quality.adherence import adherence

    prompts, labels = shipped.prompts(200)
    images = torch.cat([shipped.generate(prompts[i:i + 8], list(range(i, i + 8)))
                        for i in range(0, 200, 8)])
    assert adherence(shipped.classifier(), images, labels) >= 0.9
    assert len({tuple(t.flatten().tolist()) for t in images}) > 150  # varied, unlike greedy


def test_large_reference_loads_with_a_much_smaller_draft():
    from bench.models import get_model_info, load_model

    assert get_model_info("digits-ar-large").kind == "autoregressive"
    large = load_model("digits-ar-large")
    config = large.lm.config
    assert (config.num_hidden_layers, config.hidden_size) == (12, 384)
    draft = large.default_draft()
    n_target = sum(p.numel() for p in large.lm.parameters())
    assert sum(p.numel() for p in draft.parameters()) * 20 < n_target
    assert "cost_structure" in large.notes
    images = large.generate(["a handwritten 4"], [0])
    assert images.shape == (1, 1, 16, 16)


# -- training ---------------------------------------------------------------------------------
def test_training_script_runs_end_to_end(tmp_path):
    from bench.models.digits.training import train_digits_ar

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


@pytest.mark.slow
def test_large_training_script_runs_end_to_end(tmp_path, monkeypatch):
    from bench.models.digits.training import train_digits_ar_large

    monkeypatch.setattr(digits_ar, "LARGE_ARCH",
                        {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64})
    out = tmp_path / "large"
    code = train_digits_ar_large.main([
        "--out", str(out), "--steps", "2", "--samples", "10", "--draft-minutes", "0.05",
        "--eval-images", "10", "--min-adherence", "0",
    ])
    assert code == 0
    assert (out / "draft" / "config.json").is_file()
    assert "total_seconds" in (out / "large_training.json").read_text()
