"""``arch:flux``: FLUX.1 [dev] (black-forest-labs/FLUX.1-dev), the guidance-distilled Flux.

Which Flux: [dev], the open-weight, guidance-distilled model most acceleration work targets
(FLUX.1 [schnell] has the same transformer without the guidance embedding, and 4 steps).
Guidance is an input of the transformer (``guidance_embeds``), so one forward per step, no
classifier-free-guidance batch.

Full size: the published ``transformer/config.json`` (11.9B parameters: 19 double-stream and
38 single-stream blocks of 24 heads x 128, rotary axes 16/56/56, 64 input channels = 16 latent
channels in 2 x 2 patches), ``text_encoder`` (CLIP ViT-L/14, pooled output), ``text_encoder_2``
(T5 v1.1 XXL, 512 tokens), ``vae`` (16 latent channels, scaling 0.3611, shift 0.1159) and
``scheduler`` (flow-matching Euler with resolution-dependent shift); 1024 x 1024, 50 steps,
guidance 3.5, 512 T5 tokens (the model card's example).

Tiny: the same classes - double- and single-stream blocks (2 and 4, the real 1:2 ratio), CLIP
pooled + T5 sequence, guidance embedding, rotary axes (8/12/12 of a 32-wide head), 2 x 2
packing of 16 latent channels - at 2 heads x 32; 64 x 64 (16 image tokens next to 512 text
tokens) and 10 steps.
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.tokenizers import clip_tokenizer, t5_tokenizer

REPO = "black-forest-labs/FLUX.1-dev"

#: FLUX.1-dev transformer/config.json.
TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}

#: FLUX.1-dev vae/config.json.
VAE = D.latent16_vae(scaling_factor=0.3611, shift_factor=0.1159)

#: FLUX.1-dev scheduler/scheduler_config.json.
SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}

#: FLUX.1-dev's T5 sequence length (``max_sequence_length=512``; [schnell] uses 256).
T5_LENGTH = 512

TINY_TRANSFORMER = {
    **TRANSFORMER,
    "num_layers": 2,
    "num_single_layers": 4,
    "attention_head_dim": 32,
    "num_attention_heads": 2,
    "joint_attention_dim": D.TINY_T5["d_model"],
    "pooled_projection_dim": D.TINY_CLIP["hidden_size"],
    "axes_dims_rope": (8, 12, 12),
}
TINY_VAE = D.tiny_vae(VAE)

CALL_ARGS = {"num_inference_steps": 50, "guidance_scale": 3.5, "height": 1024, "width": 1024}
TINY_CALL_ARGS = {"num_inference_steps": 10, "guidance_scale": 3.5, "height": 64, "width": 64}


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """FLUX.1 [dev] at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    return D.build_pipeline(
        FluxPipeline, "flux", size, device, seed,
        {"transformer": D.configured(FluxTransformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": D.clip_l(projection=False), "text_encoder_2": D.t5_xxl(),
         "vae": D.kl_vae(VAE, TINY_VAE)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER), "tokenizer": clip_tokenizer(),
         "tokenizer_2": t5_tokenizer(T5_LENGTH)},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=T5_LENGTH,
        note="FLUX.1 [dev]: guidance-distilled (guidance is a transformer input, one forward "
        "per step)",
    )
