"""``arch:wan2.2`` and ``arch:wan2.2-a14b``: Wan 2.2 (Wan-AI, July 2025), the TI2V 5B dense
model and the T2V A14B mixture of two experts.

Which Wan 2.2: TI2V-5B (Wan-AI/Wan2.2-TI2V-5B), the dense text/image-to-video model with the
new high-compression VAE, run here as text-to-video; and T2V-A14B (Wan-AI/Wan2.2-T2V-A14B),
whose denoising is split between two 14B experts of the Wan 2.1 14B architecture: the
high-noise ``transformer`` takes the timesteps at or above ``boundary_ratio`` x 1000 (875),
the low-noise ``transformer_2`` the rest. One expert runs per step, so a step costs what a
14B step costs while the pipeline holds 28.6B of denoiser weights; both are components
(``denoiser`` and ``denoiser_2``), so strategies and the memory accounting see both.

Full size: diffusers' ``WanTransformer3DModel`` at the published ``transformer/config.json``
(TI2V-5B: 30 blocks of 24 heads x 128 (3072 wide), 14336-wide feed-forward, 48 latent
channels in 1 x 2 x 2 patches, per-token timesteps (``expand_timesteps``); 5.00B parameters.
A14B, each expert: 40 blocks of 40 heads x 128 (5120 wide), 13824-wide feed-forward, 16
latent channels; 14.29B), the ``text_encoder`` UMT5-XXL's encoder (google/umt5-xxl:
``UMT5EncoderModel``, 24 layers of 4096, 64 heads, gated-GELU 10240, a 256384-token
vocabulary; 5.68B) reading 512 tokens, the ``vae`` (``AutoencoderKLWan``; TI2V-5B: the Wan 2.2
VAE, 48 latent channels, 2 x 2 pixel patches and 16 x 16 x 4 compression, a residual encoder
and a 256-wide decoder, 0.70B; A14B: the Wan 2.1 VAE, 16 channels, 8 x 8 x 4, 0.13B) and the
flow-matching UniPC ``scheduler`` (``flow_prediction`` with flow sigmas, shift 5.0 for
TI2V-5B and 3.0 for A14B, as diffusers' conversion of the checkpoints sets them; the
transformer configs, the Wan 2.2 VAE's and ``boundary_ratio`` are that conversion's too,
and the text encoder google/umt5-xxl's configuration). The calls are the model
cards': TI2V-5B 121 frames of 704 x 1280 at 24 fps, 50 steps, guidance 5.0; A14B 81 frames
of 720 x 1280 at 16 fps, 40 steps, guidance 4.0 for the high-noise expert and 3.0 for the
low-noise one. Classifier-free guidance runs the transformer twice per step (the model cards
pass a long negative prompt; the pipeline's default here is the empty one, which costs the
same: both are padded to 512 tokens).

Published figures: TI2V-5B "5B" (5.00B here); A14B "14B" per expert, given to two
significant digits (each 14.29B here: the Wan 2.1 14B layout, which Wan 2.1 also calls 14B;
the model card's "27B total parameters" is less than the two experts' 28.6B here). UMT5-XXL's
encoder has no figure of its own: it is T5 v1.1 XXL's encoder layout (4.76B) with the
256384-token vocabulary and a relative-attention bias per layer, 5.68B.

Tiny: the same classes - 3-D rotary attention with cross-attention to the text, per-token
timesteps for TI2V-5B, the two experts and the boundary for A14B, the causal 3-D VAEs with
their patching and compression, UMT5 with relative attention buckets - at 2 blocks of 2
heads x 16, a 32-wide UMT5 on the offline T5 vocabulary (512 tokens) and 8-wide VAEs; 5
frames (2 latent frames) of 64 x 64, 10 steps, the published guidance.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D

REPO = "Wan-AI/Wan2.2-TI2V-5B"
A14B_REPO = "Wan-AI/Wan2.2-T2V-A14B"

#: Frames per second of the published videos (the model cards' ``export_to_video`` rates).
FRAME_RATE = 24.0
A14B_FRAME_RATE = 16.0

#: What every Wan 2.x transformer/config.json shares.
_WAN_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-6,
    "freq_dim": 256,
    "qk_norm": "rms_norm_across_heads",
    "text_dim": 4096,
    "added_kv_proj_dim": None,
    "image_dim": None,
    "rope_max_seq_len": 1024,
}
#: Wan2.2-TI2V-5B transformer/config.json.
TRANSFORMER = {**_WAN_TRANSFORMER, "num_attention_heads": 24, "num_layers": 30,
               "ffn_dim": 14336, "in_channels": 48, "out_channels": 48}
#: Wan2.2-T2V-A14B transformer/config.json and transformer_2/config.json (the same layout:
#: Wan 2.1 14B's).
A14B_TRANSFORMER = {**_WAN_TRANSFORMER, "num_attention_heads": 40, "num_layers": 40,
                    "ffn_dim": 13824, "in_channels": 16, "out_channels": 16}
#: Wan2.2-T2V-A14B model_index.json: the high-noise expert takes t >= 0.875 x 1000.
BOUNDARY_RATIO = 0.875

#: UMT5-XXL's encoder (google/umt5-xxl config.json; Wan's text_encoder/config.json).
UMT5_XXL = {**D.T5_XXL, "vocab_size": 256384, "decoder_start_token_id": 0}

#: Wan2.2-TI2V-5B vae/config.json: the Wan 2.2 VAE (its latent statistics included).
VAE = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_temporal": 4,
    "scale_factor_spatial": 16,
    "latents_mean": [
        -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542,
        0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109,
        0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899,
        -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
        0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
    ],
    "latents_std": [
        0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344,
        0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804,
        0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999,
        0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
        0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
    ],
}
#: Wan2.2-T2V-A14B vae/config.json: the Wan 2.1 VAE (AutoencoderKLWan's defaults, its latent
#: statistics included).
A14B_VAE = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
            "attn_scales": [], "temperal_downsample": [False, True, True]}

#: The published scheduler/scheduler_config.json: UniPC on flow-matching sigmas.
SCHEDULER = {"num_train_timesteps": 1000, "prediction_type": "flow_prediction",
             "use_flow_sigmas": True, "flow_shift": 5.0, "solver_order": 2,
             "solver_type": "bh2", "final_sigmas_type": "zero"}
A14B_SCHEDULER = {**SCHEDULER, "flow_shift": 3.0}

#: Text tokens the prompt is padded to (the pipeline's ``max_sequence_length``).
MAX_SEQUENCE_LENGTH = 512

_TINY = {"num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2, "ffn_dim": 64,
         "text_dim": 32, "freq_dim": 32, "rope_max_seq_len": 64}
TINY_TRANSFORMER = {**TRANSFORMER, **_TINY}
TINY_A14B_TRANSFORMER = {**A14B_TRANSFORMER, **_TINY}
#: A 32-wide UMT5 of 2 layers, 2 heads x 16 (its vocabulary: the offline tokenizer's).
TINY_UMT5 = {**UMT5_XXL, "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2}
TINY_VAE = {**VAE, "base_dim": 8, "decoder_base_dim": 16, "num_res_blocks": 1}
TINY_A14B_VAE = {**A14B_VAE, "base_dim": 8, "num_res_blocks": 1}

CALL_ARGS = {"num_inference_steps": 50, "guidance_scale": 5.0, "height": 704, "width": 1280,
             "num_frames": 121}
TINY_CALL_ARGS = {**CALL_ARGS, "num_inference_steps": 10, "height": 64, "width": 64,
                  "num_frames": 5}
A14B_CALL_ARGS = {"num_inference_steps": 40, "guidance_scale": 4.0, "guidance_scale_2": 3.0,
                  "height": 720, "width": 1280, "num_frames": 81}
TINY_A14B_CALL_ARGS = {**A14B_CALL_ARGS, "num_inference_steps": 10, "height": 64, "width": 64,
                       "num_frames": 5}


def umt5_xxl(tiny: bool) -> torch.nn.Module:
    """UMT5-XXL's encoder (:data:`UMT5_XXL`), or the tiny one on the offline T5 vocabulary."""
    from transformers import UMT5Config, UMT5EncoderModel

    from bench.models.arch.tokenizers import t5_tokenizer

    config: dict[str, Any] = UMT5_XXL
    if tiny:
        config = {**TINY_UMT5, "vocab_size": D.tiny_vocab(len(t5_tokenizer(MAX_SEQUENCE_LENGTH)))}
    return UMT5EncoderModel(UMT5Config(**config))


def _build(family: str, size: str, device: str, seed: int, *, repo: str,
           transformer: tuple[dict[str, Any], dict[str, Any]],
           vae: tuple[dict[str, Any], dict[str, Any]], scheduler: dict[str, Any],
           call_args: tuple[dict[str, Any], dict[str, Any]], frame_rate: float,
           experts: int, others: dict[str, Any], note: str) -> D.ArchModel:
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )

    from bench.models.arch.tokenizers import t5_tokenizer

    denoiser = D.configured(WanTransformer3DModel, *transformer)
    components = {"transformer": denoiser, "text_encoder": umt5_xxl,
                  "vae": D.configured(AutoencoderKLWan, *vae)}
    if experts == 2:
        components["transformer_2"] = denoiser
    return D.build_pipeline(
        WanPipeline, family, size, device, seed, components,
        {"scheduler": UniPCMultistepScheduler(**scheduler),
         "tokenizer": t5_tokenizer(MAX_SEQUENCE_LENGTH), **others},
        kind=ModelKind.DIT, call_args=call_args, reproduces=repo,
        sequence_length=MAX_SEQUENCE_LENGTH, note=note, frame_rate=frame_rate,
    )


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """Wan 2.2 TI2V-5B (text-to-video) at ``size`` (``full`` or ``tiny``), random weights from
    ``seed``."""
    return _build(
        "wan2.2", size, device, seed, repo=REPO, transformer=(TRANSFORMER, TINY_TRANSFORMER),
        vae=(VAE, TINY_VAE), scheduler=SCHEDULER, call_args=(CALL_ARGS, TINY_CALL_ARGS),
        frame_rate=FRAME_RATE, experts=1, others={"expand_timesteps": True},
        note="Wan 2.2 TI2V-5B as text-to-video: classifier-free guidance (two forwards per "
        "step), per-token timesteps, the 16x16x4 Wan 2.2 VAE; UMT5-XXL text encoder",
    )


def build_a14b(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """Wan 2.2 T2V-A14B (two experts) at ``size`` (``full`` or ``tiny``), random weights from
    ``seed``."""
    return _build(
        "wan2.2-a14b", size, device, seed, repo=A14B_REPO,
        transformer=(A14B_TRANSFORMER, TINY_A14B_TRANSFORMER), vae=(A14B_VAE, TINY_A14B_VAE),
        scheduler=A14B_SCHEDULER, call_args=(A14B_CALL_ARGS, TINY_A14B_CALL_ARGS),
        frame_rate=A14B_FRAME_RATE, experts=2, others={"boundary_ratio": BOUNDARY_RATIO},
        note="Wan 2.2 T2V-A14B: a mixture of two 14B experts (high noise: transformer, "
        "t >= 875; low noise: transformer_2), one per step, each with classifier-free "
        "guidance (two forwards per step); the Wan 2.1 VAE; UMT5-XXL text encoder",
    )
