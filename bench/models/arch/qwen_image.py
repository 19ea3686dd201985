"""``arch:qwen-image``: Qwen-Image (Qwen/Qwen-Image), the 20B MMDiT of 2025.

Which Qwen-Image: the text-to-image model of August 2025 (the edit and layered variants share
its transformer and add image inputs).

Full size: diffusers' ``QwenImageTransformer2DModel`` at the published
``transformer/config.json`` (its class defaults: 60 dual-stream blocks of 24 heads x 128,
3584-wide text features, 2 x 2 patches of 16 latent channels, rotary axes 16/56/56; 20.4B
parameters), ``text_encoder`` Qwen2.5-VL 7B Instruct (``Qwen2_5_VLForConditionalGeneration``:
the 28 x 3584 Qwen2 decoder with grouped-query attention and multimodal rotary positions and
the 32-block vision tower; 8.3B), whose last hidden states after the pipeline's 34-token
system prompt are the text features; the ``vae`` (``AutoencoderKLQwenImage``: the Wan 2.1
causal 3-D autoencoder fine-tuned for images, 16 latent channels, 8x downsampling) and the
flow-matching Euler ``scheduler`` with exponential, resolution-dependent shift; 1024 x 1024
(the pipeline's default), 50 steps, true classifier-free guidance at 4.0 against the
negative prompt " " (two transformer forwards per step), as the model card shows.

Tiny: the same classes - dual-stream blocks with rotary axes 4/6/6 of a 16-wide head, the
Qwen2.5-VL text decoder with grouped-query attention and multimodal rotary sections, a
one-block vision tower, the causal 3-D autoencoder, the chat template and its 34 dropped
tokens - at 2 blocks of 2 heads x 16 and a 32-wide text encoder whose vocabulary is the
offline tokenizer's; 64 x 64 (16 image tokens), 10 steps, true guidance at 4.0.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D

REPO = "Qwen/Qwen-Image"

#: Qwen-Image transformer/config.json (QwenImageTransformer2DModel's defaults).
TRANSFORMER = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 60,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3584,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
}

#: Qwen-Image text_encoder/config.json (Qwen2.5-VL-7B-Instruct): the text decoder ...
QWEN25_TEXT = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                        "mrope_section": [16, 24, 24]},
}
#: ... and its vision tower.
QWEN25_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": (7, 15, 23, 31),
    "hidden_act": "silu",
}

#: Qwen-Image vae/config.json (AutoencoderKLQwenImage's defaults, its latent statistics
#: included).
VAE = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
       "attn_scales": [], "temperal_downsample": [False, True, True]}

#: Qwen-Image scheduler/scheduler_config.json (the pipeline passes its own ``mu``).
SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "time_shift_type": "exponential",
    "shift_terminal": 0.02,
}

#: Text tokens after the system prompt (the pipeline's ``max_sequence_length``).
MAX_SEQUENCE_LENGTH = 512

TINY_TRANSFORMER = {**TRANSFORMER, "num_layers": 2, "attention_head_dim": 16,
                    "num_attention_heads": 2, "joint_attention_dim": 32,
                    "axes_dims_rope": (4, 6, 6)}
#: 2 layers of 32 wide, 2 heads x 16 sharing 1 key/value head; rotary sections of 8 = 16 / 2.
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1,
             "rope_parameters": {**QWEN25_TEXT["rope_parameters"], "mrope_section": [2, 3, 3]}}
TINY_VISION = {**QWEN25_VISION, "depth": 1, "hidden_size": 32, "intermediate_size": 64,
               "num_heads": 2, "out_hidden_size": 32, "fullatt_block_indexes": (0,)}
TINY_VAE = {**VAE, "base_dim": 8, "num_res_blocks": 1}

CALL_ARGS = {"num_inference_steps": 50, "true_cfg_scale": 4.0, "negative_prompt": " ",
             "height": 1024, "width": 1024}
TINY_CALL_ARGS = {**CALL_ARGS, "num_inference_steps": 10, "height": 64, "width": 64}


def qwen25_vl(tiny: bool) -> torch.nn.Module:
    """Qwen2.5-VL 7B Instruct (:data:`QWEN25_TEXT`, :data:`QWEN25_VISION`), or the tiny one on
    the offline Qwen vocabulary."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from bench.models.arch.chat_tokenizers import qwen_tokenizer, qwen_vocab_size

    text: dict[str, Any] = QWEN25_TEXT
    if tiny:
        tokenizer = qwen_tokenizer()
        text = {**QWEN25_TEXT, **TINY_TEXT, "vocab_size": D.tiny_vocab(qwen_vocab_size()),
                "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}
    config = Qwen2_5_VLConfig(text_config=text,
                              vision_config=TINY_VISION if tiny else QWEN25_VISION)
    return Qwen2_5_VLForConditionalGeneration(config)


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """Qwen-Image at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )

    from bench.models.arch.chat_tokenizers import qwen_tokenizer

    return D.build_pipeline(
        QwenImagePipeline, "qwen-image", size, device, seed,
        {"transformer": D.configured(QwenImageTransformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": qwen25_vl,
         "vae": D.configured(AutoencoderKLQwenImage, VAE, TINY_VAE)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER),
         "tokenizer": qwen_tokenizer()},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=MAX_SEQUENCE_LENGTH,
        note="Qwen-Image: true classifier-free guidance (two forwards per step) against the "
        "negative prompt ' '; Qwen2.5-VL text encoder behind its chat template",
    )
