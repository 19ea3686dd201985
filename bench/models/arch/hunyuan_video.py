"""``arch:hunyuan-video1.5``: HunyuanVideo-1.5 (tencent/HunyuanVideo-1.5, November 2025), the
8.3B video DiT, as its 480p text-to-video model.

Which HunyuanVideo-1.5: the 480p text-to-video transformer (the diffusers release
hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v) with classifier-free guidance at 6.0 (two
transformer forwards per step), not the CFG-distilled or step-distilled variants, nor the
720p or image-to-video ones (same architecture, other weights and shifts).

Full size: diffusers' ``HunyuanVideo15Transformer3DModel`` at the published
``transformer/config.json`` (its class defaults: 54 dual-stream blocks of 16 heads x 128
(2048 wide) over the video tokens and the text tokens, a 2-block token refiner for the text,
65 input channels = 32 noisy latent channels + 32 condition channels + a mask, rotary axes
16/56/56; 8.33B parameters), the ``text_encoder`` Qwen2.5-VL 7B's language model
(``Qwen2_5_VLTextModel``, 28 x 3584 with grouped-query attention and multimodal rotary
sections; 7.07B, 6.53B without the embedding) whose third-to-last hidden states of 1000
tokens after a 108-token system prompt are the text features, ``text_encoder_2`` the
Glyph-ByT5 encoder (google/byt5-small's 12-layer encoder, 1472 wide, with the glyph colour
and font tokens: 1510 ids; 0.22B) for the text in quotes a prompt asks to render, the
``vae`` (``AutoencoderKLHunyuanVideo15``: 32 latent channels, 16 x 16 x 4 compression; 1.26B)
and the flow-matching Euler ``scheduler`` at a fixed shift of 5.0; 121 frames of 480 x 848
(the pipeline's 16:9 default at the 640 target size) at 24 fps, 50 steps.

The transformer's text sequence has a fixed length whatever the prompt: 1000 Qwen tokens,
256 ByT5 tokens (zeros and masked out where the prompt quotes no text, as for every
benchmark prompt) and 729 image tokens (zeros and masked out in text-to-video), padding
included, so the cost of a call does not depend on the tokenizer. (The offline Qwen tokenizer,
whose vocabulary is learned from the benchmark prompts, splits the system prompt's words it
has not seen into bytes: the pipeline's cut at 108 tokens then leaves part of the system
prompt in the 1000-token window. The window's length, and so the cost, is the real one.)

Published figure: "8.3B parameters" (8.33B here); Qwen2.5-7B "6.53B non-embedding
parameters" (6.53B here).

Tiny: the same classes - dual-stream blocks behind the token refiner, three rotary axes
(4/6/6 of a 16-wide head), the Qwen2.5-VL text model with grouped-query attention and
multimodal rotary sections behind the chat template, the ByT5 encoder, the causal 3-D VAE
with its 16 x 16 x 4 compression, the 1000 + 256 + 729 context tokens - at 2 blocks of 2 heads
x 16, 32-wide text encoders on the offline vocabularies and an 8-wide VAE; 5 frames (2
latent frames) of 64 x 64, 10 steps, guidance 6.0.

The pipeline takes no per-step callback; :func:`bench.models.hub.scheduler_steps` times its
steps from the scheduler's. The VAE decodes the videos of a call one at a time (see
:func:`vae`).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.qwen_image import QWEN25_TEXT
from bench.models.arch.qwen_image import TINY_TEXT as TINY_QWEN25_TEXT

REPO = "tencent/HunyuanVideo-1.5"

#: Frames per second of the published videos.
FRAME_RATE = 24.0

#: HunyuanVideo-1.5 480p_t2v transformer/config.json (the class defaults; 640 px target).
TRANSFORMER = {
    "in_channels": 65,
    "out_channels": 32,
    "num_attention_heads": 16,
    "attention_head_dim": 128,
    "num_layers": 54,
    "num_refiner_layers": 2,
    "mlp_ratio": 4.0,
    "patch_size": 1,
    "patch_size_t": 1,
    "qk_norm": "rms_norm",
    "text_embed_dim": 3584,
    "text_embed_2_dim": 1472,
    "image_embed_dim": 1152,
    "rope_theta": 256.0,
    "rope_axes_dim": (16, 56, 56),
    "target_size": 640,
    "use_meanflow": False,
}

#: text_encoder_2/config.json: google/byt5-small's encoder with the Glyph-SDXL-v2 colour and
#: font tokens added (1510 ids).
BYT5_GLYPH = {
    "vocab_size": 1510,
    "d_model": 1472,
    "d_kv": 64,
    "d_ff": 3584,
    "num_layers": 12,
    "num_decoder_layers": 4,
    "num_heads": 6,
    "relative_attention_num_buckets": 32,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
}

#: vae/config.json (AutoencoderKLHunyuanVideo15's defaults).
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 32,
    "block_out_channels": (128, 256, 512, 1024, 1024),
    "layers_per_block": 2,
    "spatial_compression_ratio": 16,
    "temporal_compression_ratio": 4,
    "scaling_factor": 1.03682,
}

#: scheduler/scheduler_config.json (480p: shift 5.0) and guider/config.json.
SCHEDULER = {"num_train_timesteps": 1000, "shift": 5.0}
GUIDANCE_SCALE = 6.0

TINY_TRANSFORMER = {**TRANSFORMER, "num_attention_heads": 2, "attention_head_dim": 16,
                    "num_layers": 2, "num_refiner_layers": 1,
                    "text_embed_dim": TINY_QWEN25_TEXT["hidden_size"], "text_embed_2_dim": 32,
                    "image_embed_dim": 32, "rope_axes_dim": (4, 6, 6)}
#: A 32-wide ByT5 of 2 layers, 2 heads x 16 (its vocabulary: the real 1510 ids).
TINY_BYT5 = {**BYT5_GLYPH, "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2,
             "num_decoder_layers": 1, "num_heads": 2}
TINY_VAE = {**VAE, "block_out_channels": (8, 16, 16, 32, 32), "layers_per_block": 1}

CALL_ARGS = {"num_inference_steps": 50, "height": 480, "width": 848, "num_frames": 121}
TINY_CALL_ARGS = {**CALL_ARGS, "num_inference_steps": 10, "height": 64, "width": 64,
                  "num_frames": 5}


def qwen25_text(tiny: bool) -> torch.nn.Module:
    """Qwen2.5-VL 7B's language model (:data:`~bench.models.arch.qwen_image.QWEN25_TEXT`), or
    the tiny one on the offline Qwen vocabulary."""
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    from bench.models.arch.chat_tokenizers import qwen_tokenizer, qwen_vocab_size

    config: dict[str, Any] = QWEN25_TEXT
    if tiny:
        tokenizer = qwen_tokenizer()
        config = {**QWEN25_TEXT, **TINY_QWEN25_TEXT, "vocab_size": D.tiny_vocab(qwen_vocab_size()),
                  "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                  "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(**config))


def byt5(tiny: bool) -> torch.nn.Module:
    """The Glyph-ByT5 encoder (:data:`BYT5_GLYPH`), or the tiny one."""
    return D.t5_encoder(TINY_BYT5 if tiny else BYT5_GLYPH)


def vae(tiny: bool) -> torch.nn.Module:
    """The VAE (:data:`VAE`, tiny: :data:`TINY_VAE`), decoding one video at a time: the
    causal attention mask of its middle block in diffusers 0.42 does not broadcast over a
    batch of more than one video (batch one is what the published pipeline decodes)."""
    from diffusers import AutoencoderKLHunyuanVideo15

    module = AutoencoderKLHunyuanVideo15(**(TINY_VAE if tiny else VAE))
    module.enable_slicing()
    return module


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """HunyuanVideo-1.5 480p text-to-video at ``size`` (``full`` or ``tiny``), random weights
    from ``seed``."""
    from diffusers import (
        ClassifierFreeGuidance,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from transformers import ByT5Tokenizer

    from bench.models.arch.chat_tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    tokenizer.padding_side = "right"  # as the published tokenizer pads
    return D.build_pipeline(
        HunyuanVideo15Pipeline, "hunyuan-video1.5", size, device, seed,
        {"transformer": D.configured(HunyuanVideo15Transformer3DModel, TRANSFORMER,
                                     TINY_TRANSFORMER),
         "text_encoder": qwen25_text, "text_encoder_2": byt5,
         "vae": vae},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER), "tokenizer": tokenizer,
         "tokenizer_2": ByT5Tokenizer(),
         "guider": ClassifierFreeGuidance(guidance_scale=GUIDANCE_SCALE)},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        frame_rate=FRAME_RATE,
        note="HunyuanVideo-1.5 480p text-to-video: classifier-free guidance at 6.0 (two "
        "forwards per step; the guider holds the scale); Qwen2.5-VL 7B text model behind its "
        "chat template, plus the Glyph-ByT5 encoder for quoted text",
    )
