"""``arch:flux2`` and ``arch:flux2-klein``: FLUX.2 [dev] (black-forest-labs/FLUX.2-dev) and
FLUX.2 [klein] 4B (black-forest-labs/FLUX.2-klein-4B), the step-distilled 4-step one.

Which FLUX.2: [dev], the open-weight guidance-distilled flagship (guidance is a transformer
input, one forward per step), and [klein] 4B, the small step-distilled model (4 steps, no
guidance: one forward per step) the acceleration work on FLUX.2 compares against. Both share
the VAE, the scheduler and the transformer classes; they differ in depth, width and the text
encoder (a chat LLM whose hidden states at three layers are concatenated per token).

Full size: [dev] is diffusers' ``Flux2Transformer2DModel`` at the published
``transformer/config.json`` (32.2B parameters: 8 double-stream and 48 single-stream blocks of
48 heads x 128, rotary axes 32/32/32/32 at theta 2000, 128 input channels = 32 latent channels
in 2 x 2 patches, 15360-wide text features = 3 x 5120), ``text_encoder`` Mistral Small 3.1 24B
(``Mistral3ForConditionalGeneration``: 40 x 5120 Mistral decoder with grouped-query attention,
131072-token Tekken vocabulary, Pixtral vision tower; 24.0B), layers 10, 20 and 30 of 512
tokens after the pipeline's system message; [klein] 4B has 5 double and 20 single blocks of
24 heads x 128 (3.9B) reading layers 9, 18 and 27 of Qwen3-4B (36 x 2560, 4.0B). The ``vae``
(``AutoencoderKLFlux2``: 32 latent channels, batch-norm statistics over 2 x 2 patches) and the
``scheduler`` (flow-matching Euler, resolution- and step-dependent shift) are shared; 1024 x
1024, [dev] 50 steps at guidance 4.0, [klein] 4 steps at guidance 1.0 (pipeline defaults).

Tiny: the same classes - double- and single-stream blocks (1 and 6 for [dev], 1 and 4 for
[klein]: the real 1:6 and 1:4 ratios), four rotary axes (8 each of a 32-wide head), 2 x 2
patches of 32 latent channels with batch-norm, the chat template and three stacked hidden
layers (1, 2, 3 of 4) of a grouped-query-attention Mistral 3 (with a one-layer Pixtral tower)
or Qwen3 whose vocabulary is the offline tokenizer's - at 2 heads x 32 and 32-wide text
encoders; 64 x 64 (16 image tokens next to 512 text tokens), [dev] 10 steps, [klein] 4.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D
from bench.models.arch.flux import SCHEDULER as FLUX_SCHEDULER

REPO = "black-forest-labs/FLUX.2-dev"
KLEIN_REPO = "black-forest-labs/FLUX.2-klein-4B"

#: FLUX.2-dev transformer/config.json (diffusers' Flux2Transformer2DModel defaults).
TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 128,
    "num_layers": 8,
    "num_single_layers": 48,
    "attention_head_dim": 128,
    "num_attention_heads": 48,
    "joint_attention_dim": 15360,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": True,
}

#: FLUX.2-klein-4B transformer/config.json (joint_attention_dim: 3 x Qwen3-4B's 2560).
KLEIN_TRANSFORMER = {**TRANSFORMER, "num_layers": 5, "num_single_layers": 20,
                     "num_attention_heads": 24, "joint_attention_dim": 7680,
                     "guidance_embeds": False}

#: FLUX.2-dev text_encoder/config.json (Mistral-Small-3.1-24B: Mistral3ForConditionalGeneration).
MISTRAL_TEXT = {
    "model_type": "mistral",
    "vocab_size": 131072,
    "hidden_size": 5120,
    "intermediate_size": 32768,
    "num_hidden_layers": 40,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000000.0},
    "sliding_window": None,
    "tie_word_embeddings": False,
}
#: ... its ``vision_config`` (Pixtral) and the top-level entries.
PIXTRAL = {"model_type": "pixtral", "hidden_size": 1024, "intermediate_size": 4096,
           "num_hidden_layers": 24, "num_attention_heads": 16, "head_dim": 64, "patch_size": 14,
           "image_size": 1540, "hidden_act": "gelu",
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
MISTRAL3 = {"image_token_index": 10, "projector_hidden_act": "gelu", "vision_feature_layer": -1,
            "multimodal_projector_bias": False, "spatial_merge_size": 2,
            "tie_word_embeddings": False}

#: FLUX.2-klein-4B text_encoder/config.json (Qwen3-4B: Qwen3ForCausalLM).
QWEN3 = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
    "attention_bias": False,
}

#: FLUX.2-dev vae/config.json (AutoencoderKLFlux2 defaults; also FLUX.2-klein-4B's).
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    **D.kl_blocks(4),
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 32,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
    "batch_norm_eps": 1e-4,
    "batch_norm_momentum": 0.1,
    "patch_size": (2, 2),
}

#: FLUX.2-dev scheduler/scheduler_config.json (also [klein]'s): FLUX.1's, its exponential
#: time shift written out. The pipelines pass their own ``mu`` (``compute_empirical_mu`` of
#: the image tokens and the steps), so the base/max shift are unused but kept.
SCHEDULER = {**FLUX_SCHEDULER, "time_shift_type": "exponential"}

#: Text tokens both pipelines pad to (``max_sequence_length``).
MAX_SEQUENCE_LENGTH = 512

#: The tiny text encoders: 4 layers of 32 wide, 2 heads x 16 sharing 1 key/value head.
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
TINY_OUT_LAYERS = (1, 2, 3)

#: 1 double- and 6 single-stream blocks ([klein]: 4), the real 1:6 (1:4) ratio.
TINY_TRANSFORMER = {**TRANSFORMER, "num_layers": 1, "num_single_layers": 6,
                    "attention_head_dim": 32, "num_attention_heads": 2,
                    "joint_attention_dim": 3 * TINY_TEXT["hidden_size"],
                    "axes_dims_rope": (8, 8, 8, 8)}
TINY_KLEIN_TRANSFORMER = {**TINY_TRANSFORMER, "num_single_layers": 4, "guidance_embeds": False}
TINY_PIXTRAL = {**PIXTRAL, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "head_dim": 16}
TINY_VAE = D.tiny_vae(VAE)

CALL_ARGS = {"num_inference_steps": 50, "guidance_scale": 4.0, "height": 1024, "width": 1024,
             "text_encoder_out_layers": (10, 20, 30)}
TINY_CALL_ARGS = {"num_inference_steps": 10, "guidance_scale": 4.0, "height": 64, "width": 64,
                  "text_encoder_out_layers": TINY_OUT_LAYERS}
KLEIN_CALL_ARGS = {"num_inference_steps": 4, "guidance_scale": 1.0, "height": 1024,
                   "width": 1024, "text_encoder_out_layers": (9, 18, 27)}
TINY_KLEIN_CALL_ARGS = {**KLEIN_CALL_ARGS, "height": 64, "width": 64,
                        "text_encoder_out_layers": TINY_OUT_LAYERS}


def mistral3(tiny: bool) -> torch.nn.Module:
    """Mistral Small 3.1 (:data:`MISTRAL_TEXT`, :data:`PIXTRAL`, :data:`MISTRAL3`), or the
    tiny one on the offline Tekken vocabulary."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    from bench.models.arch.chat_tokenizers import mistral_vocab_size

    text: dict[str, Any] = MISTRAL_TEXT
    if tiny:
        text = {**MISTRAL_TEXT, **TINY_TEXT, "vocab_size": D.tiny_vocab(mistral_vocab_size())}
    config = Mistral3Config(text_config=text, vision_config=TINY_PIXTRAL if tiny else PIXTRAL,
                            **MISTRAL3)
    return Mistral3ForConditionalGeneration(config)


def qwen3(tiny: bool) -> torch.nn.Module:
    """Qwen3-4B (:data:`QWEN3`), or the tiny one on the offline Qwen vocabulary."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from bench.models.arch.chat_tokenizers import qwen_vocab_size

    config = QWEN3
    if tiny:
        config = {**QWEN3, **TINY_TEXT, "vocab_size": D.tiny_vocab(qwen_vocab_size())}
    return Qwen3ForCausalLM(Qwen3Config(**config))


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """FLUX.2 [dev] at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2Pipeline,
        Flux2Transformer2DModel,
    )

    from bench.models.arch.chat_tokenizers import mistral_tokenizer

    return D.build_pipeline(
        Flux2Pipeline, "flux2", size, device, seed,
        {"transformer": D.configured(Flux2Transformer2DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": mistral3, "vae": D.configured(AutoencoderKLFlux2, VAE, TINY_VAE)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER),
         "tokenizer": mistral_tokenizer()},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=MAX_SEQUENCE_LENGTH,
        note="FLUX.2 [dev]: guidance-distilled (guidance is a transformer input, one forward "
        "per step); Mistral Small 3.1 text encoder behind a tokenizer with its chat template "
        "(the published PixtralProcessor's text path)",
    )


def build_klein(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """FLUX.2 [klein] 4B (step-distilled) at ``size``, random weights from ``seed``."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    from bench.models.arch.chat_tokenizers import qwen_tokenizer

    return D.build_pipeline(
        Flux2KleinPipeline, "flux2-klein", size, device, seed,
        {"transformer": D.configured(Flux2Transformer2DModel, KLEIN_TRANSFORMER,
                                     TINY_KLEIN_TRANSFORMER),
         "text_encoder": qwen3, "vae": D.configured(AutoencoderKLFlux2, VAE, TINY_VAE)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER), "tokenizer": qwen_tokenizer(),
         "is_distilled": True},
        kind=ModelKind.DIT, call_args=(KLEIN_CALL_ARGS, TINY_KLEIN_CALL_ARGS),
        reproduces=KLEIN_REPO, sequence_length=MAX_SEQUENCE_LENGTH,
        note="FLUX.2 [klein] 4B: step-distilled (4 steps, no guidance, one forward per step)",
    )
