"""``arch:sana``: Sana 1600M at 1024 px (Efficient-Large-Model/Sana_1600M_1024px_diffusers).

Which Sana: the 1.6B model (``SanaMS_1600M_P1_D20``), the one published first in diffusers
format; the 0.6B model differs only in width and depth.

Full size: the transformer of diffusers' ``scripts/convert_sana_to_diffusers.py`` for
``SanaMS_1600M_P1_D20`` at 1024 px (20 blocks of linear self-attention, 70 heads x 32, and
cross-attention, 20 heads x 112, to 2304-wide Gemma features; Mix-FFN feed-forward, ratio
2.5; patch 1 over 32 latent channels; 1.6B parameters), the Gemma 2 2B decoder
(Efficient-Large-Model/gemma-2-2b-it, as ``text_encoder``), the DC-AE ``vae``
(dc-ae-f32c32-sana-1.0: 32x compression, 32 latent channels) and the flow DPM-Solver
``scheduler`` (flow shift 3.0); 1024 x 1024, 20 steps, guidance 4.5, 300 tokens after the
pipeline's default instruction (the pipeline's defaults).

Tiny: the same classes (linear self-attention and Mix-FFN blocks, Gemma 2 with grouped-query
attention, a six-stage DC-AE with ResBlock and EfficientViT stages), 4 blocks of 2 heads x 16
and a two-layer Gemma whose vocabulary is the offline tokenizer's; 128 x 128 (a 4 x 4 latent,
16 tokens) and 10 steps, without resolution binning.
"""

from __future__ import annotations

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.tokenizers import GEMMA_VOCAB_SIZE, gemma_tokenizer, gemma_vocab_size

REPO = "Efficient-Large-Model/Sana_1600M_1024px_diffusers"

#: Sana_1600M_1024px_diffusers transformer/config.json (SanaMS_1600M_P1_D20, 1024 px).
TRANSFORMER = {
    "in_channels": 32,
    "out_channels": 32,
    "num_attention_heads": 70,
    "attention_head_dim": 32,
    "num_layers": 20,
    "num_cross_attention_heads": 20,
    "cross_attention_head_dim": 112,
    "cross_attention_dim": 2240,
    "caption_channels": 2304,
    "mlp_ratio": 2.5,
    "attention_bias": False,
    "sample_size": 32,
    "patch_size": 1,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "interpolation_scale": None,
}

#: gemma-2-2b-it config.json (the decoder is Sana's text encoder).
GEMMA = {
    "vocab_size": GEMMA_VOCAB_SIZE,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
}

#: dc-ae-f32c32-sana-1.0 (diffusers' scripts/convert_dcae_to_diffusers.py).
VAE = {
    "latent_channels": 32,
    "encoder_block_types": ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
    "decoder_block_types": ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
    "encoder_block_out_channels": (128, 256, 512, 512, 1024, 1024),
    "decoder_block_out_channels": (128, 256, 512, 512, 1024, 1024),
    "encoder_qkv_multiscales": ((), (), (), (5,), (5,), (5,)),
    "decoder_qkv_multiscales": ((), (), (), (5,), (5,), (5,)),
    "encoder_layers_per_block": (2, 2, 2, 3, 3, 3),
    "decoder_layers_per_block": (3, 3, 3, 3, 3, 3),
    "downsample_block_type": "conv",
    "upsample_block_type": "interpolate",
    "decoder_norm_types": "rms_norm",
    "decoder_act_fns": "silu",
    "scaling_factor": 0.41407,
}

#: Sana_1600M_1024px_diffusers scheduler/scheduler_config.json (flow DPM-Solver++).
SCHEDULER = {"flow_shift": 3.0, "use_flow_sigmas": True, "prediction_type": "flow_prediction"}

#: Gemma tokens after the instruction (``max_sequence_length`` default).
MAX_SEQUENCE_LENGTH = 300

TINY_TRANSFORMER = {
    **TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "num_layers": 4,
    "num_cross_attention_heads": 2,
    "cross_attention_head_dim": 16,
    "cross_attention_dim": 32,
    "caption_channels": 64,
    "sample_size": 4,
}
TINY_VAE = {
    **VAE,
    "attention_head_dim": 8,
    "encoder_block_out_channels": (8, 16, 16, 16, 32, 32),
    "decoder_block_out_channels": (8, 16, 16, 16, 32, 32),
    "encoder_layers_per_block": (1,) * 6,
    "decoder_layers_per_block": (1,) * 6,
}

CALL_ARGS = {"num_inference_steps": 20, "guidance_scale": 4.5, "height": 1024, "width": 1024}
TINY_CALL_ARGS = {
    "num_inference_steps": 10,
    "guidance_scale": 4.5,
    "height": 128,
    "width": 128,
    "use_resolution_binning": False,
}


def tiny_gemma() -> dict:
    """The tiny Gemma 2: two layers, grouped-query attention (2 heads sharing 1 key/value
    head), its vocabulary cut to the offline tokenizer's ids."""
    vocab = D.tiny_vocab(gemma_vocab_size())
    return {
        **GEMMA,
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "query_pre_attn_scalar": 32,
    }


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """Sana 1600M 1024 px at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = gemma_tokenizer()
    tokenizer.padding_side = "right"
    return D.build_pipeline(
        SanaPipeline, "sana", size, device, seed,
        {"transformer": D.configured(SanaTransformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": lambda tiny: Gemma2Model(Gemma2Config(**(tiny_gemma() if tiny else GEMMA))),
         "vae": D.configured(AutoencoderDC, VAE, TINY_VAE)},
        {"tokenizer": tokenizer, "scheduler": DPMSolverMultistepScheduler(**SCHEDULER)},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=MAX_SEQUENCE_LENGTH,
    )
