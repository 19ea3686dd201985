"""arch:janus and arch:emu3: the published configurations, tiny generation through our decoding
loop, and the decoding strategies on them."""

from __future__ import annotations

import time

import pytest
import torch

from bench.models import arch, load_model
from strategies import parse_stack

FAMILIES = ("janus", "emu3")


@pytest.fixture(scope="module")
def tiny_models():
    return {family: load_model(f"arch:{family}@tiny") for family in FAMILIES}


@pytest.fixture(scope="module")
def full_on_meta():
    return {family: arch.load(f"arch:{family}", device="meta") for family in FAMILIES}


def test_families_are_registered_after_the_diffusion_ones():
    names = list(arch.FAMILIES)
    for family in FAMILIES:
        assert arch.FAMILIES[family].kind == "autoregressive"
        assert f"arch:{family}@tiny" in arch.names()
    assert names[-2:] == list(FAMILIES)


def test_full_janus_is_janus_pro_1b(full_on_meta):
    model = full_on_meta["janus"]
    cfg = model.network_module.config
    text = cfg.text_config
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size) == (24, 2048, 5632)
    assert (text.num_attention_heads, text.vocab_size) == (16, 102400)
    assert (cfg.vq_config.num_embeddings, cfg.vq_config.embed_dim) == (16384, 8)
    assert model.token_grid == (24, 24) and model.tokens_per_image == 576
    language = sum(p.numel() for p in model.network_module.model.language_model.parameters())
    assert language == pytest.approx(1.443e9, rel=0.01)
    assert model.call_args["guidance_scale"] == 5.0


def test_full_emu3_is_emu3_gen(full_on_meta):
    model = full_on_meta["emu3"]
    cfg = model.network_module.config
    text = cfg.text_config
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size) == (32, 4096, 14336)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (32, 8, 184622)
    assert cfg.vq_config.codebook_size == 32768
    assert model.token_grid == (90, 91)  # 720 x 720 pixels: 90 rows of 90 codes + end-of-line
    total = sum(p.numel() for p in model.network_module.parameters())
    assert total == pytest.approx(8.76e9, rel=0.01)
    assert model.call_args["top_k"] == 2048


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_generates_quickly_through_the_decoding_loop(tiny_models, family):
    model = tiny_models[family]
    assert model.random_weights and model.kind == "autoregressive"
    prompts, _ = model.prompts(2)
    steps: list[int] = []
    start = time.perf_counter()
    images = model.generate(prompts, [0, 1], step_callback=steps.append)
    assert time.perf_counter() - start < 3.0
    side = arch.FAMILIES[family].tiny_resolution
    assert images.shape == (2, 3, side, side)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert torch.equal(images, model.generate(prompts, [0, 1]))
    assert len(steps) == model.tokens_per_image
    assert model.describe()["decoder"] == {"decoder": "autoregressive"}


@pytest.mark.parametrize("family", FAMILIES)
def test_quality_is_unavailable_except_fidelity(tiny_models, family):
    model = tiny_models[family]
    assert model.classifier() is None
    with pytest.raises(Exception, match="random-weight"):
        model.real_images()
    with pytest.raises(Exception, match="random-weight"):
        next(iter(model.train_batches(1)))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("spec", ["sjd:block=3", "speculative:num_assistant_tokens=3"])
def test_exact_decoders_reproduce_greedy_output(tiny_models, family, spec):
    model = tiny_models[family]
    prompts, _ = model.prompts(2)
    plain = model.generate(prompts, [0, 1], do_sample=False)
    fast = parse_stack(spec).apply(model.clone())
    assert torch.equal(plain, fast.generate(prompts, [0, 1], do_sample=False))
    assert fast.notes["decoding"]["tokens_per_forward"] >= 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_zipar_decodes_rows_in_parallel(tiny_models, family):
    model = parse_stack("zipar:window=1").apply(tiny_models[family].clone())
    rows, cols = model.token_grid
    prompts, _ = model.prompts(2)
    assert model.generate(prompts, [0, 1]).shape[0] == 2
    assert model.notes["decoding"]["forward_passes_per_image"] == (rows - 1) + cols


def test_speculative_draft_is_the_same_class_with_two_layers(tiny_models):
    for family, model in tiny_models.items():
        draft = model.default_draft()
        assert type(draft) is type(model.network_module)
        text = "language_model" if family == "janus" else "text_model"
        target_layers = len(getattr(model.network_module.model, text).layers)
        assert len(getattr(draft.model, text).layers) < target_layers or target_layers == 1


def test_emu3_rows_end_with_end_of_line(tiny_models):
    model = tiny_models["emu3"].clone()
    prompts, _ = model.prompts(1)
    captured = {}
    spec = model.family_spec
    original = spec.images

    def keep(module, tokens):
        captured["tokens"] = tokens
        return original(module, tokens)

    spec.images = keep
    model.generate(prompts, [0])
    rows, cols = model.token_grid
    grid = captured["tokens"].reshape(rows, cols)
    assert bool((grid[:, -1] == spec.codebook).all())  # end-of-line closes every row
    assert bool((grid[:, :-1] < spec.codebook).all())  # visual tokens elsewhere


def test_channels_last_converts_2d_convolutions_beside_3d_ones(tiny_models):
    """Emu3's VQ decoder mixes 2-D and 3-D convolutions: only the 2-D ones change layout."""
    model = parse_stack("channels-last").apply(tiny_models["emu3"].clone())
    modules = list(model.denoiser.modules())
    conv3d = [m for m in modules if isinstance(m, torch.nn.Conv3d)]
    conv2d = [m for m in modules if isinstance(m, torch.nn.Conv2d)]
    assert conv3d and conv2d
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in conv2d)
    assert all(m.weight.is_contiguous() for m in conv3d)
    prompts, _ = model.prompts(1)
    assert model.generate(prompts, [0]).shape[0] == 1


def test_attention_pinning_says_a_transformers_model_has_no_processors(tiny_models):
    reason = parse_stack("attention").strategies[0].supports(tiny_models["janus"])
    assert "no diffusers attention processors" in reason and "attn_implementation" in reason
