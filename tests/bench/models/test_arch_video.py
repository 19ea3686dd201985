"""Video architecture models ``arch:<family>[@tiny]`` (Wan 2.2 TI2V-5B and T2V-A14B, LTX-2,
HunyuanVideo-1.5): the published sizes (built on the meta device, no memory), the model
cards' calls, and the tiny variants as video models (5-D frames, determinism, one callback
per step, both experts of the mixture, every network a component)."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.core.kinds import ModelKind
from bench.models import arch
from bench.models.base import is_video
from bench.models.registry import ModelError, check_resolution, get_model_info
from tests.support.arch import VIDEO_FAMILIES, generate, tiny

#: Published denoiser sizes (parameters) and the absolute tolerance of a figure published to
#: whole billions (half a unit of the digit given, as tests/bench/models/test_arch.py does);
#: otherwise the build must be within 1%:
#: - Wan2.2 TI2V-5B: "5B" (Wan 2.2 model card; 4,999,787,712 here);
#: - Wan2.2 T2V-A14B: "14B" per expert (model card: two experts, 14B active per step; each
#:   14,288,491,584 here, the Wan 2.1 14B layout);
#: - LTX-2: "19B" (the ltx-2-19b checkpoints; the transformer 18,876,174,592 here: within 1%);
#: - HunyuanVideo-1.5: "8.3B parameters" (technical report; 8,326,608,160 here).
PUBLISHED_DENOISER = {"wan2.2": (5e9, 0.5e9), "wan2.2-a14b": (14e9, 0.5e9),
                      "ltx2": (19e9, 0.0), "hunyuan-video1.5": (8.3e9, 0.0)}

#: The model cards' calls: (steps, guidance, frames, height, width, frames per second).
CALLS = {
    "wan2.2": (50, 5.0, 121, 704, 1280, 24.0),
    "wan2.2-a14b": (40, 4.0, 81, 720, 1280, 16.0),
    "ltx2": (40, 4.0, 121, 512, 768, 24.0),
    "hunyuan-video1.5": (50, 6.0, 121, 480, 848, 24.0),
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def full_on_meta():
    """Every video family at its published size, on the meta device (shapes only)."""
    return {family: arch.load(f"arch:{family}", device="meta") for family in VIDEO_FAMILIES}


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_full_size_matches_the_published_parameter_count(full_on_meta, family):
    model = full_on_meta[family]
    published, rounded = PUBLISHED_DENOISER[family]
    denoisers = [m for role, m in model.components().items() if role.startswith("denoiser")]
    assert len(denoisers) == (2 if family == "wan2.2-a14b" else 1)
    for denoiser in denoisers:
        assert _count(denoiser) == pytest.approx(published, rel=0.01, abs=rounded)
    assert all(p.is_meta for m in model.components().values() for p in m.parameters())
    info = model.describe()
    assert info["size"] == "full" and info["random_weights"] is True
    assert info["reproduces"] and info["reproduces"] in info["architecture"]


def test_full_size_text_encoders_match_their_published_layouts(full_on_meta):
    from bench.models.arch import diffusion as D

    comps = {f: m.components() for f, m in full_on_meta.items()}
    # UMT5-XXL's encoder is T5 v1.1 XXL's layout (4.76B) with a 256384-token vocabulary and
    # a relative-attention bias in each of its 24 layers instead of the first only.
    with torch.device("meta"):
        t5_xxl = _count(D.t5_encoder(D.T5_XXL))
    umt5 = t5_xxl + (256384 - D.T5_XXL["vocab_size"]) * 4096 + 23 * 32 * 64
    assert _count(comps["wan2.2"]["text_encoder"]) == umt5 == 5_680_910_336
    assert _count(comps["wan2.2-a14b"]["text_encoder"]) == umt5
    # Gemma 3 12B: "12B" (with its SigLIP tower: 12.19B).
    assert _count(comps["ltx2"]["text_encoder"]) == pytest.approx(12e9, abs=0.5e9)
    # Qwen2.5-7B: "6.53B non-embedding parameters" (Qwen2.5 model card).
    qwen = comps["hunyuan-video1.5"]["text_encoder"]
    non_embedding = _count(qwen) - qwen.get_input_embeddings().weight.numel()
    assert non_embedding == pytest.approx(6.53e9, rel=0.01)


def test_full_size_calls_are_the_model_cards(full_on_meta):
    for family, (steps, guidance, frames, height, width, fps) in CALLS.items():
        model = full_on_meta[family]
        args = model.call_args
        scale = (model.pipe.guider.guidance_scale if family == "hunyuan-video1.5"
                 else args["guidance_scale"])
        assert (args["num_inference_steps"], scale, args["num_frames"]) == (steps, guidance, frames)
        assert (args["height"], args["width"]) == (height, width), family
        spec = arch.FAMILIES[family]
        assert (spec.resolution, spec.width, spec.frame_rate) == (height, width, fps)
        assert model.frame_rate == fps and model.frames_per_video == frames
    a14b = full_on_meta["wan2.2-a14b"]
    assert a14b.pipe.config.boundary_ratio == 0.875 and a14b.call_args["guidance_scale_2"] == 3.0
    assert full_on_meta["wan2.2"].pipe.config.expand_timesteps
    assert full_on_meta["wan2.2"].call_args["max_sequence_length"] == 512
    ltx = full_on_meta["ltx2"].call_args
    # LTX-2.0's sampling: classifier-free guidance only.
    assert (ltx["stg_scale"], ltx["modality_scale"], ltx["guidance_rescale"]) == (0.0, 1.0, 0.0)
    assert ltx["frame_rate"] == 24.0 and ltx["max_sequence_length"] == 1024


def test_registry_lists_the_video_families_and_checks_their_multiples():
    names = arch.names()
    for family in VIDEO_FAMILIES:
        spec = arch.FAMILIES[family]
        assert spec.kind == ModelKind.DIT and spec.cuda_dtype == "bf16" and spec.frame_rate
        assert f"arch:{family}" in names and f"arch:{family}@tiny" in names
        assert get_model_info(f"arch:{family}@tiny").resolution == spec.tiny_resolution
    # The autoregressive families stay last.
    assert list(arch.FAMILIES)[-2:] == ["janus", "emu3"]
    check_resolution("arch:wan2.2", (704, 1280))
    with pytest.raises(ModelError, match="multiple of 32"):
        check_resolution("arch:wan2.2", (720, 1280))  # why the model card uses 704
    check_resolution("arch:wan2.2-a14b", (720, 1280))


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_tiny_generates_deterministic_frames_with_one_callback_per_step(family):
    model = tiny(family)
    assert model.name == f"arch:{family}@tiny" and model.random_weights and is_video(model)
    size = arch.FAMILIES[family].tiny_resolution
    assert (model.call_args["height"], model.call_args["width"]) == (size, size)
    assert model.call_args["num_inference_steps"] == 10
    frames = model.frames_per_video
    steps: list[int] = []
    videos = generate(model, 2, prompts=("a red bicycle", "a fox"), seeds=(0, 1),
                      step_callback=steps.append)
    assert steps == list(range(len(model.pipe.scheduler.timesteps))) == [0, 1]
    assert videos.shape == (2, frames, 3, size, size) and videos.dtype == torch.float32
    assert videos.min() >= 0 and videos.max() <= 1 and videos.std() > 0.01
    again = generate(model, 2, prompts=("a red bicycle", "a fox"), seeds=(0, 1))
    torch.testing.assert_close(again, videos, rtol=0, atol=0)
    other_seed = generate(model, 2, prompts=("a red bicycle",), seeds=(5,))
    assert not torch.equal(other_seed[0], videos[0])
    # The step count is left behind by no patch (HunyuanVideo-1.5's pipeline takes no step
    # callback: its scheduler's steps are counted for the call only).
    assert "step" not in vars(model.pipe.scheduler)


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_tiny_describes_a_video_and_every_network_is_a_component(family):
    model = tiny(family)
    info = model.describe()
    assert info["video"] == {"frames_per_video": model.call_args["num_frames"],
                             "frame_rate": arch.FAMILIES[family].frame_rate}
    assert info["size"] == "tiny" and "tiny variant" in info["architecture"]
    # A precision change reaches every network the pipeline runs (LTX-2's connectors between
    # its text encoder and transformer included: a cast that missed them would fail).
    networks = {id(m) for m in model.pipe.components.values() if isinstance(m, torch.nn.Module)}
    assert networks == {id(m) for m in model.components().values()}
    with pytest.raises(ModelError, match="random-weight architecture models have no data"):
        model.real_images()


def test_a14b_has_both_experts_as_components_and_runs_each_on_its_noise_levels():
    model = tiny("wan2.2-a14b")
    comps = model.components()
    high, low = comps["denoiser"], comps["denoiser_2"]
    assert high is model.pipe.transformer and low is model.pipe.transformer_2 and high is not low
    assert _count(high) == _count(low)
    assert not torch.equal(next(high.parameters()), next(low.parameters()))  # own seeds
    calls = {"high": 0, "low": 0}
    hooks = [high.register_forward_hook(lambda *_: calls.__setitem__("high", calls["high"] + 1)),
             low.register_forward_hook(lambda *_: calls.__setitem__("low", calls["low"] + 1))]
    try:
        generate(model, 4)
    finally:
        for hook in hooks:
            hook.remove()
    timesteps = model.pipe.scheduler.timesteps
    high_steps = int((timesteps >= 875).sum())
    assert 0 < high_steps < len(timesteps)
    # Classifier-free guidance: two forwards of the step's expert.
    assert calls == {"high": 2 * high_steps, "low": 2 * (len(timesteps) - high_steps)}
    twin = model.clone(share_weights=True)
    replacement = copy.deepcopy(low)
    twin.set_component("denoiser_2", replacement)
    assert twin.pipe.transformer_2 is replacement and model.pipe.transformer_2 is low


def test_tiny_generates_other_frame_counts():
    model = tiny("wan2.2")
    videos = generate(model, 1, num_frames=9, height=32, width=64)
    assert videos.shape == (1, 9, 3, 32, 64)
