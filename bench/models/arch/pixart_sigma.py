"""``arch:pixart-sigma``: PixArt-Sigma XL/2 at 1024 px (PixArt-alpha/PixArt-Sigma-XL-2-1024-MS).

Full size: the transformer of the published ``transformer/config.json`` (as diffusers'
``scripts/convert_pixart_sigma_to_diffusers.py`` builds it: 28 blocks of 16 heads x 72 with
adaLN-single, cross-attention to 4096-wide T5 features, patch 2, 8 output channels for the
learned variance, interpolation scale 2, no micro-conditions; 611M parameters), the T5 v1.1
XXL ``text_encoder`` (300 tokens), the SDXL ``vae`` (pixart_sigma_sdxlvae_T5_diffusers) and
the DPM-Solver++ ``scheduler``; 1024 x 1024, 20 steps, guidance 4.5 (the pipeline's
defaults).

Caption cleaning (``clean_caption``, which needs bs4 and ftfy) is off: it is text
preprocessing, not model work, and without those packages the pipeline turns it off anyway.

Tiny: the same ``PixArtTransformer2DModel`` (adaLN-single blocks, caption projection, patch
2, learned variance) with 4 blocks of 2 heads x 16, a two-layer T5 with the real 300 tokens;
64 x 64 (16 image tokens) and 10 steps, without resolution binning (the aspect-ratio bins
exist only for the published sample sizes).
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.tokenizers import t5_tokenizer

REPO = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"

#: PixArt-Sigma-XL-2-1024-MS transformer/config.json.
TRANSFORMER = {
    "sample_size": 128,
    "num_layers": 28,
    "attention_head_dim": 72,
    "num_attention_heads": 16,
    "in_channels": 4,
    "out_channels": 8,
    "patch_size": 2,
    "attention_bias": True,
    "cross_attention_dim": 1152,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 4096,
    "interpolation_scale": 2,
    "use_additional_conditions": False,
}

#: pixart_sigma_sdxlvae_T5_diffusers vae/config.json: the SDXL VAE.
VAE = {**D.SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025}

#: PixArt-Sigma-XL-2-1024-MS scheduler/scheduler_config.json (DPM-Solver++, order 2).
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "algorithm_type": "dpmsolver++",
    "solver_order": 2,
    "prediction_type": "epsilon",
}

#: The pipeline's T5 sequence length (``max_sequence_length`` default).
T5_LENGTH = 300

TINY_TRANSFORMER = {
    **TRANSFORMER,
    "sample_size": 8,
    "num_layers": 4,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "cross_attention_dim": 32,
    "caption_channels": D.TINY_T5["d_model"],
    "interpolation_scale": 1,
}
TINY_VAE = {**D.TINY_VAE, "scaling_factor": 0.13025}

CALL_ARGS = {
    "num_inference_steps": 20,
    "guidance_scale": 4.5,
    "height": 1024,
    "width": 1024,
    "clean_caption": False,
}
TINY_CALL_ARGS = {
    "num_inference_steps": 10,
    "guidance_scale": 4.5,
    "height": 64,
    "width": 64,
    "clean_caption": False,
    "use_resolution_binning": False,
}


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """PixArt-Sigma XL/2 1024 at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    return D.build_pipeline(
        PixArtSigmaPipeline, "pixart-sigma", size, device, seed,
        {"transformer": D.configured(PixArtTransformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": D.t5_xxl(), "vae": D.kl_vae(VAE, TINY_VAE)},
        {"tokenizer": t5_tokenizer(T5_LENGTH), "scheduler": DPMSolverMultistepScheduler(**SCHEDULER)},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=T5_LENGTH,
    )
