"""``arch:sd15``: Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5).

Full size: the published ``unet/config.json`` (859.5M parameters), ``text_encoder``
(CLIP ViT-L/14's text tower, 123M), ``vae`` (the KL autoencoder, 83.7M) and ``scheduler``
(PNDM, scaled-linear betas); 512 x 512, 50 steps, guidance 7.5 (the model card's defaults).

Tiny: the same ``UNet2DConditionModel`` layout (four levels, three with cross-attention, two
resnets per level, a cross-attention mid block), a two-layer CLIP text encoder with the real
77 positions and vocabulary, a four-level VAE (8x downsampling) and PNDM; 64 x 64 (an 8 x 8
latent) and 10 steps.
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.tokenizers import clip_tokenizer

REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"

#: stable-diffusion-v1-5 unet/config.json.
UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    # diffusers' legacy name: the number of heads (8 heads of 40, 80, 160 dims).
    "attention_head_dim": 8,
}

#: stable-diffusion-v1-5 scheduler/scheduler_config.json (PNDM).
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

TINY_UNET = {
    **UNET,
    "sample_size": 8,
    "block_out_channels": (32, 64, 128, 128),
    "norm_num_groups": 8,
    "cross_attention_dim": D.TINY_CLIP["hidden_size"],
    "attention_head_dim": 4,
}

#: The model card's defaults (512 x 512, 50 PNDM steps, guidance 7.5).
CALL_ARGS = {"num_inference_steps": 50, "guidance_scale": 7.5, "height": 512, "width": 512}
TINY_CALL_ARGS = {"num_inference_steps": 10, "guidance_scale": 7.5, "height": 64, "width": 64}


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """Stable Diffusion 1.5 at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    return D.build_pipeline(
        StableDiffusionPipeline, "sd15", size, device, seed,
        {"unet": D.configured(UNet2DConditionModel, UNET, TINY_UNET),
         "text_encoder": D.clip_l(projection=False), "vae": D.kl_vae(D.SD_VAE, D.TINY_VAE)},
        {"tokenizer": clip_tokenizer(), "scheduler": PNDMScheduler(**SCHEDULER),
         "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
        kind=ModelKind.UNET, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
    )
