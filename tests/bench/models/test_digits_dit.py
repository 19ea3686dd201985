"""digits-dit: the embedded transformer diffusion model loads offline, is a real diffusers
pipeline with a PixArt transformer that diffusers' cache hooks accept, generates
deterministically, round-trips through save/load, and (slow) is recognisable."""

from __future__ import annotations

import pytest
import torch

from bench.models import get_model_info, load_model
from tests.support.tiny_diffusion import PROMPTS, SEEDS, tiny_dit, tiny_unet


@pytest.fixture(scope="module")
def dit():
    return load_model("digits-dit")


def test_registered_and_loaded_offline(dit):
    info = get_model_info("digits-dit")
    assert info.kind == "diffusion-dit"
    assert dit.kind == "diffusion-dit" and dit.name == "digits-dit"
    assert dit.call_args == {"num_inference_steps": 25, "guidance_scale": dit.call_args["guidance_scale"]}
    assert set(dit.components()) == {"denoiser", "text_encoder"}


def test_denoiser_is_a_pixart_transformer_with_diffusers_cache_support(dit):
    from diffusers import PixArtTransformer2DModel
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.models.cache_utils import CacheMixin

    denoiser = dit.denoiser
    assert isinstance(denoiser, PixArtTransformer2DModel) and isinstance(denoiser, CacheMixin)
    assert denoiser is dit.pipe.transformer is dit.pipe.denoiser
    cfg = denoiser.config
    assert (cfg.sample_size // cfg.patch_size) ** 2 == 64  # tokens per image
    for block in denoiser.transformer_blocks:
        TransformerBlockRegistry.get(type(block))  # registered: raises otherwise
        assert block.attn2 is not None  # cross-attention to the prompt
    assert 0.3e6 < dit.parameter_count() < 3e6


def test_generation_is_deterministic_per_image(dit):
    prompts, _ = dit.prompts(3)
    images = dit.generate(prompts, [5, 6, 7], num_inference_steps=4)
    assert images.shape == (3, 1, 16, 16) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    alone = dit.generate(prompts[1:2], [6], num_inference_steps=4)
    torch.testing.assert_close(alone[0], images[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="seeds"):
        dit.generate(prompts, [1])


def test_save_and_load_round_trip(tmp_path):
    from bench.models.digits.dit import load
    from bench.models.digits.training.train_digits_dit import save_pipeline

    model = tiny_dit(steps=2)
    save_pipeline(model.pipe, tmp_path / "dit", dtype=torch.float32)
    loaded = load(directory=tmp_path / "dit")
    loaded.call_args = dict(model.call_args)
    torch.testing.assert_close(loaded.generate(PROMPTS, SEEDS), model.generate(PROMPTS, SEEDS))
    assert (tmp_path / "dit" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()


def test_missing_weights_name_the_training_command(tmp_path):
    from bench.models.digits.dit import load

    with pytest.raises(FileNotFoundError, match="train_digits_dit"):
        load(directory=tmp_path)


def test_the_shared_loop_still_drives_the_unet():
    model = tiny_unet(steps=2)
    pipe = model.pipe
    assert pipe.denoiser is pipe.unet and pipe.current_timestep is None
    seen = []
    pipe.unet.register_forward_pre_hook(lambda *_: seen.append(pipe.current_timestep))
    model.generate(PROMPTS, SEEDS)
    assert [int(t) for t in seen] == [int(t) for t in pipe.scheduler.timesteps]
    assert pipe.current_timestep is None


def test_the_dit_loop_sets_diffusers_cache_contexts():
    model = tiny_dit(steps=2)
    contexts = []
    model.denoiser.register_forward_pre_hook(lambda *_: contexts.append(True))
    original = model.denoiser.cache_context

    def spy(name, **kwargs):
        contexts.append((name, kwargs["step_index"]))
        return original(name, **kwargs)

    model.denoiser.cache_context = spy
    model.generate(PROMPTS, SEEDS)
    assert contexts == [("cond_uncond", 0), True, ("cond_uncond", 1), True]


@pytest.mark.slow
def test_recognisable(dit):
    """The classifier reads the prompted digit in at least 80% of 100 images."""
    from bench.quality.adherence import adherence

    prompts, labels = dit.prompts(100)
    images = torch.cat([dit.generate(prompts[i : i + 50], list(range(i, i + 50))) for i in (0, 50)])
    assert adherence(dit.classifier(), images, labels) >= 0.80
