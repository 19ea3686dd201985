"""Architecture models ``arch:<family>[@tiny]``: the published sizes (built on the meta device,
no memory), and the tiny variants as models (load offline, generate, determinism, callbacks,
tokenizers' sequence lengths, no data)."""

from __future__ import annotations

import pytest
import torch

from bench.models import arch
from bench.models.registry import ModelError, check_resolution, get_model_info, load_model
from tests.support.arch import DIFFUSION_FAMILIES, generate, tiny

#: Published denoiser sizes (parameters), which a build from the published configuration must
#: match within 1%:
#: - SD 1.5 UNet: 859.5M (stable-diffusion-v1-5 model card: "860M UNet"; diffusers counts
#:   859,520,964 for its unet/config.json);
#: - SDXL base 1.0 UNet: 2.567B (SDXL paper, Podell et al. 2023: "2.6B"; 2,567,463,684);
#: - SD3 Medium MMDiT: 2.03B (Stability AI: "2 billion parameters"; 2,028,328,000);
#: - FLUX.1 [dev] transformer: 11.9B (black-forest-labs: "12 billion parameter rectified flow
#:   transformer"; 11,901,408,320);
#: - PixArt-Sigma XL/2: 611M (PixArt-Sigma paper, Chen et al. 2024: 0.6B);
#: - Sana 1600M: 1.6B (Sana paper, Xie et al. 2024: Sana-1.6B);
#: - FLUX.2 [dev] transformer: 32B (black-forest-labs: "32 billion parameter"; 32.22B here);
#: - FLUX.2 [klein] 4B transformer: "4B" (black-forest-labs; 3.88B here);
#: - Qwen-Image MMDiT: "20B" (Qwen-Image technical report, 2025; 20.43B here);
#: - Z-Image transformer: "6B" (Z-Image technical report, Tongyi-MAI 2025; 6.15B here).
#: Where a figure is published to one significant digit, the check is to that digit: the build
#: must round to it (:data:`ROUNDED`: half a unit of the digit given), not within 1%.
PUBLISHED_DENOISER = {
    "sd15": 859.5e6,
    "sdxl": 2.567e9,
    "sd3": 2.03e9,
    "flux": 11.9e9,
    "pixart-sigma": 611e6,
    "sana": 1.6e9,
    "flux2": 32e9,
    "flux2-klein": 4e9,
    "qwen-image": 20e9,
    "z-image": 6e9,
}
#: Absolute tolerance of the figures published as whole billions.
ROUNDED = {"flux2-klein": 0.5e9, "qwen-image": 0.5e9, "z-image": 0.5e9}

#: Published text encoder sizes: CLIP ViT-L/14's text tower 123M, OpenCLIP bigG's 695M,
#: T5 v1.1 XXL's encoder 4.76B, Gemma 2 2B 2.61B (with its embedding), Mistral Small 3.1 24B
#: (with its Pixtral vision tower: 24.0B), Qwen3-4B 4.02B (Qwen3 model card: "4.0B"),
#: Qwen2.5-VL 7B Instruct 8.29B (its model listing; with the vision tower).
PUBLISHED_TEXT = {
    "sd15": {"text_encoder": 123e6},
    "sdxl": {"text_encoder": 123e6, "text_encoder_2": 695e6},
    "sd3": {"text_encoder_3": 4.76e9},
    "flux": {"text_encoder_2": 4.76e9},
    "pixart-sigma": {"text_encoder": 4.76e9},
    "sana": {"text_encoder": 2.61e9},
    "flux2": {"text_encoder": 24.0e9},
    "flux2-klein": {"text_encoder": 4.02e9},
    "qwen-image": {"text_encoder": 8.29e9},
    "z-image": {"text_encoder": 4.02e9},
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def full_on_meta():
    """Every family at its published size, on the meta device (shapes only)."""
    return {family: arch.load(f"arch:{family}", device="meta") for family in DIFFUSION_FAMILIES}


@pytest.mark.parametrize("family", DIFFUSION_FAMILIES)
def test_full_size_matches_the_published_parameter_count(full_on_meta, family):
    model = full_on_meta[family]
    denoiser = model.components()["denoiser"]
    assert _count(denoiser) == pytest.approx(PUBLISHED_DENOISER[family], rel=0.01,
                                             abs=ROUNDED.get(family, 0))
    for role, published in PUBLISHED_TEXT[family].items():
        assert _count(model.components()[role]) == pytest.approx(published, rel=0.01), role
    # Built on the meta device: no parameter has storage.
    assert all(p.is_meta for m in model.components().values() for p in m.parameters())
    info = model.describe()
    assert info["size"] == "full" and info["random_weights"] is True
    assert info["reproduces"] and info["reproduces"] in info["architecture"]
    assert model.call_args["height"] == arch.FAMILIES[family].resolution


def test_full_size_defaults_are_the_documented_ones(full_on_meta):
    steps = {f: (m.call_args["num_inference_steps"],
                 m.call_args.get("guidance_scale", m.call_args.get("true_cfg_scale")))
             for f, m in full_on_meta.items()}
    assert steps == {
        "sd15": (50, 7.5),
        "sdxl": (50, 5.0),
        "sd3": (28, 7.0),
        "flux": (50, 3.5),
        "flux2": (50, 4.0),
        "flux2-klein": (4, 1.0),
        "qwen-image": (50, 4.0),
        "z-image": (9, 0.0),
        "pixart-sigma": (20, 4.5),
        "sana": (20, 4.5),
    }
    assert full_on_meta["flux"].call_args["max_sequence_length"] == 512
    # Qwen-Image's true guidance needs its negative prompt, as the model card passes it.
    assert full_on_meta["qwen-image"].call_args["negative_prompt"] == " "
    assert full_on_meta["flux2"].call_args["text_encoder_out_layers"] == (10, 20, 30)
    assert full_on_meta["flux2-klein"].pipe.config.is_distilled


def test_registry_lists_every_family_full_and_tiny():
    names = arch.names()
    for family in DIFFUSION_FAMILIES:
        assert f"arch:{family}" in names and f"arch:{family}@tiny" in names
        info = get_model_info(f"arch:{family}@tiny")
        assert info.resolution == arch.FAMILIES[family].tiny_resolution
        assert "random weights" in info.summary
    with pytest.raises(ModelError, match="did you mean 'arch:sdxl'"):
        arch.parse("arch:sdx")


#: Step-distilled families, whose tiny variants keep the published step count.
STEP_DISTILLED = {"flux2-klein": 4, "z-image": 9}


@pytest.mark.parametrize("family", DIFFUSION_FAMILIES)
def test_tiny_generates_deterministically_with_one_callback_per_step(family):
    model = tiny(family)
    assert model.name == f"arch:{family}@tiny" and model.random_weights
    size = arch.FAMILIES[family].tiny_resolution
    assert (model.call_args["height"], model.call_args["width"]) == (size, size)
    # 10 steps, or the step-distilled model's own count.
    assert model.call_args["num_inference_steps"] == STEP_DISTILLED.get(family, 10)
    steps: list[int] = []
    images = generate(model, 3, prompts=("a red bicycle", "a fox"), seeds=(0, 1),
                      step_callback=steps.append)
    # One call per iteration of the denoising loop: 3 for every scheduler here but PNDM,
    # whose PLMS start (SD 1.5's scheduler) repeats one timestep, 4 (51 for SD 1.5's 50).
    assert steps == list(range(len(model.pipe.scheduler.timesteps)))
    assert len(steps) == (4 if family == "sd15" else 3)
    assert images.shape == (2, 3, size, size) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.01
    again = generate(model, 3, prompts=("a red bicycle", "a fox"), seeds=(0, 1))
    torch.testing.assert_close(again, images, rtol=0, atol=0)
    other_seed = generate(model, 3, prompts=("a red bicycle",), seeds=(5,))
    assert not torch.equal(other_seed[0], images[0])


#: The text sequence each denoiser sees, as the real pipelines make it: CLIP 77 tokens; SD3
#: CLIP's 77 next to T5's 256; FLUX.1 [dev] T5's 512; PixArt-Sigma 300; Sana 300 (after the
#: instruction, which the pipeline cuts back off); FLUX.2 512 after its system message;
#: Qwen-Image the prompt's tokens after its 34-token system prompt (2 + the 5 closing the
#: turn); Z-Image the chat-formatted prompt's tokens, padding dropped (3 + 2 + 5).
SEQUENCE = {"sd15": 77, "sdxl": 77, "sd3": 77 + 256, "flux": 512, "flux2": 512,
            "flux2-klein": 512, "qwen-image": 7, "z-image": 10, "pixart-sigma": 300, "sana": 300}


@pytest.mark.parametrize("family", DIFFUSION_FAMILIES)
def test_tiny_text_sequence_has_the_real_length(family):
    model = tiny(family)
    pipe = model.pipe
    kwargs = {"device": torch.device("cpu"), "num_images_per_prompt": 1}
    if family in ("sd15",):
        out = pipe.encode_prompt(["a cat"], do_classifier_free_guidance=False, **kwargs)
    elif family == "sdxl":
        out = pipe.encode_prompt(["a cat"], do_classifier_free_guidance=False, **kwargs)
        assert pipe.tokenizer_2.pad_token == "!"
    elif family in ("sd3",):
        out = pipe.encode_prompt(["a cat"], ["a cat"], ["a cat"], do_classifier_free_guidance=False,
                                 max_sequence_length=256, **kwargs)
    elif family == "flux":
        out = pipe.encode_prompt(["a cat"], ["a cat"], max_sequence_length=512, **kwargs)
    elif family in ("flux2", "flux2-klein"):
        out = pipe.encode_prompt(["a cat"], max_sequence_length=512, **kwargs,
                                 text_encoder_out_layers=model.call_args["text_encoder_out_layers"])
    elif family == "qwen-image":
        out = pipe.encode_prompt(["a cat"], max_sequence_length=512, **kwargs)
    elif family == "z-image":
        out = pipe.encode_prompt(["a cat"], device=kwargs["device"],
                                 do_classifier_free_guidance=False)
        out = (out[0][0][None],)  # one variable-length tensor per prompt
    else:
        out = pipe.encode_prompt(["a cat"], do_classifier_free_guidance=False,
                                 max_sequence_length=300, **kwargs)
    assert out[0].shape[:2] == (1, SEQUENCE[family])
    for name in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, name, None)
        if type(tok).__name__.startswith("CLIP"):
            assert tok.model_max_length == 77


def test_tokenizers_keep_the_benchmark_prompts_words_whole():
    from bench.models.arch.tokenizers import clip_tokenizer, gemma_tokenizer, t5_tokenizer
    from bench.models.hub import HUB_PROMPTS

    prompt = HUB_PROMPTS[0]  # "a photograph of an astronaut riding a horse": 8 words
    clip = clip_tokenizer()
    assert clip(prompt).input_ids[0] == 49406 and clip(prompt).input_ids[-1] == 49407
    assert len(clip(prompt).input_ids) == 8 + 2
    assert len(t5_tokenizer(256)(prompt).input_ids) == 8 + 1  # + </s>
    gemma = gemma_tokenizer()
    assert gemma(prompt).input_ids[0] == gemma.bos_token_id and len(gemma(prompt).input_ids) == 8 + 1
    # Unknown words fall back to pieces, never fail.
    assert len(clip("a zebra").input_ids) > 3 and gemma("zebra é").input_ids


def test_tiny_has_no_data_and_says_why():
    model = tiny("pixart-sigma")
    for call in (model.real_images, lambda: next(iter(model.train_batches(2)))):
        with pytest.raises(ModelError, match="random-weight architecture models have no data"):
            call()
    info = model.describe()
    assert info["size"] == "tiny" and info["reproduces"] == "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"
    assert "tiny variant" in info["architecture"]
    prompts, _ = model.prompts(12)
    assert prompts[10] == prompts[0]


def test_arch_resolutions_are_checked_against_the_family_multiple():
    check_resolution("arch:sana@tiny", (256, 128))
    with pytest.raises(ModelError, match="multiple of 32"):
        check_resolution("arch:sana@tiny", (80, 80))
    with pytest.raises(ModelError, match="multiple of 16"):
        check_resolution("arch:flux", (1000, 1000))


def test_tiny_generates_at_another_resolution():
    model = tiny("sd3")
    images = generate(model, 2, height=96, width=64)
    assert images.shape == (1, 3, 96, 64)


def test_unknown_size_is_refused():
    from bench.models.arch import sd15

    with pytest.raises(ModelError, match="'full' and 'tiny'"):
        sd15.build("huge", "meta", 0)


@pytest.mark.slow
def test_full_sd15_builds_and_runs_on_the_cpu():
    """The published SD 1.5 really allocated (4.3 GB in fp32) and run for one step at 64 px."""
    model = load_model("arch:sd15")
    assert _count(model.denoiser) == 859_520_964
    images = generate(model, 1, height=64, width=64)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()
