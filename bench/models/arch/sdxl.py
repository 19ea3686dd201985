"""``arch:sdxl``: Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0).

Full size: the published ``unet/config.json`` (2.567B parameters: three levels, transformer
depths 1, 2 and 10, cross-attention to both text encoders' 2048-wide hidden states, and the
"text_time" added conditioning of the pooled bigG embedding plus six size/crop numbers),
``text_encoder`` (CLIP ViT-L/14), ``text_encoder_2`` (OpenCLIP ViT-bigG/14 with projection),
``vae`` (the KL autoencoder, SDXL scaling 0.13025) and ``scheduler`` (Euler, leading
spacing); 1024 x 1024, 50 steps, guidance 5.0 (the pipeline's defaults, as the model card
uses them).

Tiny: the same layout - two text encoders (the second with projection), the text_time added
conditioning (its input width is again the projection plus six time embeddings), the first
level without attention and transformer stacks that deepen level by level (depths 1, 2, 4:
the full model's 10 at the last level is cut to 4, which keeps a deep stack there while
``compile`` of the tiny UNet takes 83 s instead of about 115 s on a 2-core CPU) - at
16/32/64 channels; 64 x 64 (an 8 x 8 latent) and 10 steps.
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.tokenizers import clip_tokenizer

REPO = "stabilityai/stable-diffusion-xl-base-1.0"

#: stable-diffusion-xl-base-1.0 unet/config.json.
UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 2048,
    "transformer_layers_per_block": (1, 2, 10),
    # diffusers' legacy name: heads per level (5, 10, 20 heads of 64 dims).
    "attention_head_dim": (5, 10, 20),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}

#: stable-diffusion-xl-base-1.0 vae/config.json: SD's KL autoencoder, SDXL's scaling.
VAE = {**D.SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

#: stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json (Euler).
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "use_karras_sigmas": False,
}

_TINY_TIME = 8
TINY_UNET = {
    **UNET,
    "sample_size": 8,
    "block_out_channels": (16, 32, 64),
    "norm_num_groups": 8,
    "attention_head_dim": (1, 2, 4),
    "cross_attention_dim": D.TINY_CLIP["hidden_size"] + D.TINY_CLIP_BIGG["hidden_size"],
    "addition_time_embed_dim": _TINY_TIME,
    "projection_class_embeddings_input_dim": D.TINY_CLIP_BIGG["projection_dim"] + 6 * _TINY_TIME,
    "transformer_layers_per_block": (1, 2, 4),
}
TINY_VAE = {**D.TINY_VAE, "scaling_factor": 0.13025, "force_upcast": True}

CALL_ARGS = {"num_inference_steps": 50, "guidance_scale": 5.0, "height": 1024, "width": 1024}
TINY_CALL_ARGS = {"num_inference_steps": 10, "guidance_scale": 5.0, "height": 64, "width": 64}


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """SDXL base 1.0 at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    return D.build_pipeline(
        StableDiffusionXLPipeline, "sdxl", size, device, seed,
        {"unet": D.configured(UNet2DConditionModel, UNET, TINY_UNET),
         "text_encoder": D.clip_l(projection=False), "text_encoder_2": D.clip_bigg(),
         "vae": D.kl_vae(VAE, TINY_VAE)},
        {"tokenizer": clip_tokenizer(), "tokenizer_2": clip_tokenizer(pad_token="!"),
         "scheduler": EulerDiscreteScheduler(**SCHEDULER), "force_zeros_for_empty_prompt": True,
         "add_watermarker": False},
        kind=ModelKind.UNET, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
    )
