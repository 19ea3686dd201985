"""``arch:z-image``: Z-Image-Turbo (Tongyi-MAI/Z-Image-Turbo), the 6B single-stream DiT of
late 2025, distilled to 8 function evaluations.

Which Z-Image: Turbo, the distilled release people deploy (9 scheduler steps, no guidance:
one forward per step); the base model shares its transformer and samples with guidance.

Full size: diffusers' ``ZImageTransformer2DModel`` at the published
``transformer/config.json`` (its class defaults: 30 single-stream blocks of 30 heads x 128
over the concatenated image and text tokens, 2 noise- and 2 context-refiner blocks before
them, 2 x 2 patches of 16 latent channels, 3-axis rotary positions 32/48/48; 6.2B
parameters), ``text_encoder`` Qwen3-4B (``Qwen3ForCausalLM``, 36 x 2560; its second-to-last
hidden states of the prompt's tokens after the chat template, padding dropped, are the text
features; 4.0B), the ``vae`` (FLUX.1's 16-channel KL autoencoder, scaling 0.3611, shift
0.1159) and the flow-matching Euler ``scheduler`` at a fixed shift of 3.0; 1024 x 1024, 9
steps, guidance 0.0 (the model card's call).

Tiny: the same classes - refiner and single-stream blocks (1 each of the refiners and 2 main
blocks), three rotary axes (8/12/12 of a 32-wide head), the Qwen3 decoder with grouped-query
attention behind the chat template - at 2 heads x 32, a 32-wide text encoder on the offline
Qwen vocabulary and the tiny KL autoencoder; 64 x 64 (16 image tokens), 9 steps.
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.flux2 import qwen3

REPO = "Tongyi-MAI/Z-Image-Turbo"

#: Z-Image-Turbo transformer/config.json (ZImageTransformer2DModel's defaults).
TRANSFORMER = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 2560,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1024, 512, 512],
}

#: Z-Image-Turbo vae/config.json: FLUX.1's autoencoder.
VAE = D.latent16_vae(scaling_factor=0.3611, shift_factor=0.1159)

#: Z-Image-Turbo scheduler/scheduler_config.json: a fixed shift, no resolution dependence.
SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}

#: Text tokens the prompt is padded and cut to before the padding is dropped.
MAX_SEQUENCE_LENGTH = 512

TINY_TRANSFORMER = {**TRANSFORMER, "dim": 64, "n_layers": 2, "n_refiner_layers": 1,
                    "n_heads": 2, "n_kv_heads": 2, "cap_feat_dim": 32,
                    "axes_dims": [8, 12, 12]}
TINY_VAE = D.tiny_vae(VAE)

CALL_ARGS = {"num_inference_steps": 9, "guidance_scale": 0.0, "height": 1024, "width": 1024}
TINY_CALL_ARGS = {**CALL_ARGS, "height": 64, "width": 64}


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """Z-Image-Turbo at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    from bench.models.arch.chat_tokenizers import qwen_tokenizer

    return D.build_pipeline(
        ZImagePipeline, "z-image", size, device, seed,
        {"transformer": D.configured(ZImageTransformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": qwen3, "vae": D.kl_vae(VAE, TINY_VAE)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER),
         "tokenizer": qwen_tokenizer()},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=MAX_SEQUENCE_LENGTH,
        note="Z-Image-Turbo: distilled (9 steps, no guidance, one forward per step); "
        "Qwen3-4B text encoder behind its chat template",
    )
