"""``arch:sd3``: Stable Diffusion 3 Medium (stabilityai/stable-diffusion-3-medium-diffusers).

Full size: the published ``transformer/config.json`` (the 2B MMDiT: 24 joint blocks of 24
heads x 64, patch 2, 16 latent channels), ``text_encoder`` and ``text_encoder_2`` (CLIP
ViT-L/14 and OpenCLIP ViT-bigG/14, both with projection: their pooled outputs make the
2048-wide pooled projection), ``text_encoder_3`` (T5 v1.1 XXL, 256 tokens), ``vae`` (the KL
autoencoder with 16 latent channels, no quant convs, scaling 1.5305 and shift 0.0609) and
``scheduler`` (flow-matching Euler, shift 3.0); 1024 x 1024, 28 steps, guidance 7.0 (the
model card's example).

Tiny: the same three text encoders (CLIP hidden states concatenated and zero-padded to the
T5 width, as in the real model), joint blocks over text and image tokens, patch 2 and 16
latent channels; 4 blocks of 4 heads x 16; 64 x 64 (16 image tokens next to 77 + 256 text
tokens) and 10 steps.
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.tokenizers import clip_tokenizer, t5_tokenizer

REPO = "stabilityai/stable-diffusion-3-medium-diffusers"

#: stable-diffusion-3-medium-diffusers transformer/config.json.
TRANSFORMER = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
}

#: stable-diffusion-3-medium-diffusers vae/config.json.
VAE = D.latent16_vae(scaling_factor=1.5305, shift_factor=0.0609)

#: stable-diffusion-3-medium-diffusers scheduler/scheduler_config.json.
SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0}

#: The pipeline's T5 sequence length (``max_sequence_length`` default).
T5_LENGTH = 256

TINY_TRANSFORMER = {
    **TRANSFORMER,
    "sample_size": 8,
    "num_layers": 4,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "caption_projection_dim": 64,
    "joint_attention_dim": D.TINY_T5["d_model"],
    "pooled_projection_dim": D.TINY_CLIP["projection_dim"] + D.TINY_CLIP_BIGG["projection_dim"],
    # The real model's positions cover 3x its default latent; so do the tiny one's.
    "pos_embed_max_size": 12,
}
TINY_VAE = D.tiny_vae(VAE)

CALL_ARGS = {"num_inference_steps": 28, "guidance_scale": 7.0, "height": 1024, "width": 1024}
TINY_CALL_ARGS = {"num_inference_steps": 10, "guidance_scale": 7.0, "height": 64, "width": 64}


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """SD3 Medium at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    return D.build_pipeline(
        StableDiffusion3Pipeline, "sd3", size, device, seed,
        {"transformer": D.configured(SD3Transformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": D.clip_l(projection=True), "text_encoder_2": D.clip_bigg(),
         "text_encoder_3": D.t5_xxl(), "vae": D.kl_vae(VAE, TINY_VAE)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER), "tokenizer": clip_tokenizer(),
         "tokenizer_2": clip_tokenizer(pad_token="!"), "tokenizer_3": t5_tokenizer(T5_LENGTH)},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=T5_LENGTH,
    )
