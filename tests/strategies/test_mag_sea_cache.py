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
        ("magcache", "qwen-image"),
        # FLUX.2 [dev]'s pipeline opens no cache context: the call-context hook does.
        ("magcache", "flux2"),
        ("seacache", "sd3"),
        ("seacache", "pixart-sigma"),
        # packed tokens laid back on their grid: img_ids (FLUX, FLUX.2), img_shapes (Qwen-Image)
        ("seacache", "flux"),
        ("seacache", "qwen-image"),
    ],
)
def test_arch_tiny_models_skip_blocks(name, arch):
    from bench.models.registry import load_model

    model = load_model(f"arch:{arch}@tiny")
    base = model.generate(["a cat"], [0])
    cached = _apply(f"{name}:threshold=5", model)
    blocks = [b for _, b in cached.denoiser.named_children()
              if isinstance(b, torch.nn.ModuleList) and len(b) >= 2][0]
    # Inside the block: a skipped block still "runs" its hook.
    calls = count_calls(getattr(blocks[1], "ff", None) or blocks[1].attn)
    images = cached.generate(["a cat"], [0])
    assert images.shape == base.shape and torch.isfinite(images).all()
    assert 0 < calls[0] < model.steps


@pytest.mark.parametrize(
    ("name", "arch", "words"),
    [
        ("magcache", "sana", "TransformerBlockRegistry"),
        ("seacache", "sana", "TransformerBlockRegistry"),
        # diffusers registers Z-Image's block, whose forward calls its hidden states "x".
        ("magcache", "z-image", "takes its hidden states as 'x'"),
        ("fbcache", "z-image", "takes its hidden states as 'x'"),
        ("seacache", "z-image", "takes its hidden states as 'x'"),
        # FLUX.2's single-stream blocks join text and image: no residual of the whole stack.
        ("seacache", "flux2", "joined into one sequence"),
        ("fbcache", "flux2-klein", "joined into one sequence"),
        # true CFG as two calls per step: hooks with one state would mix the two passes.
        ("pab", "qwen-image", "two denoiser calls per step"),
        ("fastercache", "qwen-image", "two denoiser calls per step"),
    ],
)
def test_refuses_unhookable_arch_models_with_a_reason(name, arch, words):
    from bench.models.registry import load_model

    assert words in get_strategy(name)().supports(load_model(f"arch:{arch}@tiny"))


def test_packed_tokens_are_laid_back_on_their_grid():
    """FLUX packs 2 x 2 latent patches row by row; SeaCache's callback puts each token back
    at its (row, column), the patch's channels at one pixel of the token grid."""
    from strategies.caches.seacache import image_latents

    latents = torch.randn(2, 4, 6, 10)  # (B, C, H, W): a 3 x 5 grid of 2 x 2 patches
    packed = latents.view(2, 4, 3, 2, 5, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 15, 16)
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(5), indexing="ij")
    img_ids = torch.stack([torch.zeros(15), rows.flatten(), cols.flatten()], dim=-1)
    for kwargs in ({"img_ids": img_ids}, {"img_shapes": [[(1, 3, 5)]] * 2}):
        out = image_latents(None, (), {"hidden_states": packed, **kwargs})
        assert [o.shape for o in out] == [(16, 1, 3, 5)] * 2
        # The token at row 1, column 3 of sample 1 holds the patch latents[1, :, 2:4, 6:8].
        patch = latents[1, :, 2:4, 6:8].reshape(-1)
        torch.testing.assert_close(out[1][:, 0, 1, 3], patch, rtol=0, atol=0)
    # Tokens that do not fill the grid are not guessed at.
    assert image_latents(None, (), {"hidden_states": packed, "img_shapes": [[(1, 4, 5)]]}) is None
