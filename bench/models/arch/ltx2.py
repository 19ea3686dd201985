"""``arch:ltx2``: LTX-2 (Lightricks/LTX-2), the 19B audio-video DiT that writes a video and its
sound track together.

Which LTX-2: the first release, 2.0 (``ltx-2-19b-dev``: the full, undistilled model), with
the sampling its diffusers pipeline was released with: classifier-free guidance only (one
transformer forward per step on a batch of two: the prompt and the empty negative prompt),
no spatio-temporal or modality-isolation guidance, no guidance rescale, and the 2.0 timestep
of the cross-modal attention (``use_cross_timestep=False``). The 2.3 and 2.5 releases reuse
the pipeline class with other defaults; they are not what is built here.

Full size: diffusers' ``LTX2VideoTransformer3DModel`` at the published
``transformer/config.json`` (48 blocks, each a video stream of 32 heads x 128 (4096 wide)
and an audio stream of 32 heads x 64 (2048 wide) with self-, text cross- and audio-video
cross-attention; 128 latent channels per token, split 3-axis rotary positions; 18.88B
parameters: 12.9B in the video stream's attention and feed-forward, 3.2B in the audio
stream's, 2.4B in the audio-video cross-attention), the ``text_encoder`` Gemma 3 12B
(``Gemma3ForConditionalGeneration``: 48 layers of 3840 with 16 heads x 256 and sliding-window
attention, 262208-token vocabulary, the SigLIP vision tower; 12.19B) whose 49 hidden states
of 1024 left-padded tokens are stacked per token, the ``connectors`` (``LTX2TextConnectors``:
the 49 x 3840 -> 3840 projection and two 2-layer 1-D transformers with 128 learnable
registers, one per stream; 1.43B), the ``vae`` (``AutoencoderKLLTX2Video``: 128 latent
channels, 4 x 4 pixel patches and 32 x 32 x 8 compression, a causal encoder and a non-causal
decoder; 1.22B), the ``audio_vae`` (``AutoencoderKLLTX2Audio``: 8 latent channels over
64-bin stereo mel spectrograms at 16 kHz, 4x compression in time and frequency; 53M), the
``vocoder`` (``LTX2Vocoder``: HiFi-GAN-style, 240x upsampling to 24 kHz stereo; 56M) and the
flow-matching Euler ``scheduler`` with resolution-dependent shift (0.95 to 2.05) and a
terminal shift of 0.1; 121 frames of 512 x 768 at 24 fps (and 5 s of sound), 40 steps,
guidance 4.0 for both streams (the pipeline's documented call).

Published figure: "19B" (the ``ltx-2-19b`` checkpoints; the transformer here is 18.88B),
Gemma 3 12B "12B" (12.19B here).

Tiny: the same classes - the dual video/audio stream blocks with their cross-modal
attention, split rotary positions, the stacked hidden states of a Gemma 3 (with a one-layer
SigLIP tower) through the connectors and their registers, both VAEs with their patching and
compression, the vocoder's five upsampling stages - at 2 blocks (video 2 heads x 16, audio 2
heads x 8), a 32-wide 2-layer Gemma 3 on the offline Gemma vocabulary (1024 tokens), an
8-wide video VAE, a 32-wide audio VAE over 16 mel bins and a 32-wide vocoder; 9 frames (2
latent frames) of 64 x 64 with their 0.375 s of sound, 10 steps, guidance 4.0.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.kinds import ModelKind
from bench.models.arch import diffusion as D

REPO = "Lightricks/LTX-2"

#: Frames per second of the published videos (the pipeline's ``frame_rate``, which also
#: sets the rotary time positions and the sound's length).
FRAME_RATE = 24.0

#: LTX-2 transformer/config.json.
TRANSFORMER = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "vae_scale_factors": (8, 32, 32),
    "pos_embed_max_pos": 20,
    "base_height": 2048,
    "base_width": 2048,
    "gated_attn": False,
    "cross_attn_mod": False,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_patch_size": 1,
    "audio_patch_size_t": 1,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "audio_scale_factor": 4,
    "audio_pos_embed_max_pos": 20,
    "audio_sampling_rate": 16000,
    "audio_hop_length": 160,
    "audio_gated_attn": False,
    "audio_cross_attn_mod": False,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 3840,
    "attention_bias": True,
    "attention_out_bias": True,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_offset": 1,
    "timestep_scale_multiplier": 1000,
    "cross_attn_timestep_scale_multiplier": 1000,
    "rope_type": "split",
    "use_prompt_embeddings": True,
    "perturbed_attn": False,
}

#: LTX-2 connectors/config.json (49 = Gemma 3 12B's 48 layers + its embeddings).
CONNECTORS = {
    "caption_channels": 3840,
    "text_proj_in_factor": 49,
    "video_connector_num_attention_heads": 30,
    "video_connector_attention_head_dim": 128,
    "video_connector_num_layers": 2,
    "video_connector_num_learnable_registers": 128,
    "video_gated_attn": False,
    "audio_connector_num_attention_heads": 30,
    "audio_connector_attention_head_dim": 128,
    "audio_connector_num_layers": 2,
    "audio_connector_num_learnable_registers": 128,
    "audio_gated_attn": False,
    "connector_rope_base_seq_len": 4096,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_temporal_positioning": False,
    "rope_type": "split",
    "per_modality_projections": False,
    "proj_bias": False,
}

#: LTX-2 vae/config.json.
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (256, 512, 1024, 2048),
    "down_block_types": ("LTX2VideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_type": ("spatiotemporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "encoder_causal": True,
    "decoder_causal": False,
    "encoder_spatial_padding_mode": "zeros",
    "decoder_spatial_padding_mode": "reflect",
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}

#: LTX-2 audio_vae/config.json.
AUDIO_VAE = {
    "base_channels": 128,
    "output_channels": 2,
    "ch_mult": (1, 2, 4),
    "num_res_blocks": 2,
    "attn_resolutions": None,
    "in_channels": 2,
    "resolution": 256,
    "latent_channels": 8,
    "norm_type": "pixel",
    "causality_axis": "height",
    "dropout": 0.0,
    "mid_block_add_attention": False,
    "sample_rate": 16000,
    "mel_hop_length": 160,
    "is_causal": True,
    "mel_bins": 64,
    "double_z": True,
}

#: LTX-2 vocoder/config.json.
VOCODER = {
    "in_channels": 128,
    "hidden_channels": 1024,
    "out_channels": 2,
    "upsample_kernel_sizes": [16, 15, 8, 4, 4],
    "upsample_factors": [6, 5, 2, 2, 2],
    "resnet_kernel_sizes": [3, 7, 11],
    "resnet_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "act_fn": "leaky_relu",
    "leaky_relu_negative_slope": 0.1,
    "antialias": False,
    "final_act_fn": "tanh",
    "final_bias": True,
    "output_sampling_rate": 24000,
}

#: LTX-2 text_encoder/config.json (gemma-3-12b-it): the text decoder ...
GEMMA3_TEXT = {
    "vocab_size": 262208,
    "hidden_size": 3840,
    "intermediate_size": 15360,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    },
}
#: ... its vision tower (SigLIP so400m at 896 px) and the multimodal entries.
SIGLIP = {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
          "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 896,
          "patch_size": 14, "vision_use_head": False}
GEMMA3 = {"mm_tokens_per_image": 256, "boi_token_index": 255999, "eoi_token_index": 256000,
          "image_token_index": 262144}

#: LTX-2 scheduler/scheduler_config.json (the pipeline passes its own ``mu`` and sigmas).
SCHEDULER = {"num_train_timesteps": 1000, "use_dynamic_shifting": True, "base_shift": 0.95,
             "max_shift": 2.05, "base_image_seq_len": 1024, "max_image_seq_len": 4096,
             "shift_terminal": 0.1}

#: Text tokens the prompt is left-padded to (the pipeline's ``max_sequence_length``).
MAX_SEQUENCE_LENGTH = 1024

#: The tiny Gemma 3: 2 layers of 32, 2 heads x 16 sharing 1 key/value head.
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
             "query_pre_attn_scalar": 16}
TINY_SIGLIP = {**SIGLIP, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_attention_heads": 2}
TINY_TRANSFORMER = {**TRANSFORMER, "num_attention_heads": 2, "attention_head_dim": 16,
                    "cross_attention_dim": 32, "audio_num_attention_heads": 2,
                    "audio_attention_head_dim": 8, "audio_cross_attention_dim": 16,
                    "num_layers": 2, "caption_channels": TINY_TEXT["hidden_size"],
                    "audio_in_channels": 32, "audio_out_channels": 32}
TINY_CONNECTORS = {**CONNECTORS, "caption_channels": TINY_TEXT["hidden_size"],
                   "text_proj_in_factor": TINY_TEXT["num_hidden_layers"] + 1,
                   "video_connector_num_attention_heads": 2,
                   "video_connector_attention_head_dim": 16,
                   "audio_connector_num_attention_heads": 2,
                   "audio_connector_attention_head_dim": 16}
TINY_VAE = {**VAE, "block_out_channels": (8, 16, 32, 64), "decoder_block_out_channels": (8, 16, 32),
            "layers_per_block": (1, 1, 1, 1, 1), "decoder_layers_per_block": (1, 1, 1, 1)}
#: The tiny audio path: 16 mel bins (8 latent channels x 4 latent bins = the audio tokens'
#: 32 channels, which the audio VAE's width and latent statistics must equal) and a vocoder
#: reading the 2 x 16 bins.
TINY_AUDIO_VAE = {**AUDIO_VAE, "base_channels": 32, "mel_bins": 16, "num_res_blocks": 1}
TINY_VOCODER = {**VOCODER, "in_channels": 32, "hidden_channels": 32}

#: The call of LTX-2.0's pipeline: classifier-free guidance on both streams, nothing else.
CALL_ARGS = {"num_inference_steps": 40, "guidance_scale": 4.0, "audio_guidance_scale": 4.0,
             "stg_scale": 0.0, "audio_stg_scale": 0.0, "modality_scale": 1.0,
             "audio_modality_scale": 1.0, "guidance_rescale": 0.0,
             "audio_guidance_rescale": 0.0, "use_cross_timestep": False,
             "height": 512, "width": 768, "num_frames": 121, "frame_rate": FRAME_RATE}
TINY_CALL_ARGS = {**CALL_ARGS, "num_inference_steps": 10, "height": 64, "width": 64,
                  "num_frames": 9}


def gemma3(tiny: bool) -> torch.nn.Module:
    """Gemma 3 12B (:data:`GEMMA3_TEXT`, :data:`SIGLIP`, :data:`GEMMA3`), or the tiny one on
    the offline Gemma vocabulary."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    from bench.models.arch.tokenizers import gemma_vocab_size

    text: dict[str, Any] = GEMMA3_TEXT
    if tiny:
        text = {**GEMMA3_TEXT, **TINY_TEXT, "vocab_size": D.tiny_vocab(gemma_vocab_size())}
    config = Gemma3Config(text_config=text, vision_config=TINY_SIGLIP if tiny else SIGLIP,
                          **GEMMA3)
    return Gemma3ForConditionalGeneration(config)


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> D.ArchModel:
    """LTX-2 at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder

    from bench.models.arch.tokenizers import gemma_tokenizer

    return D.build_pipeline(
        LTX2Pipeline, "ltx2", size, device, seed,
        {"transformer": D.configured(LTX2VideoTransformer3DModel, TRANSFORMER, TINY_TRANSFORMER),
         "text_encoder": gemma3,
         "connectors": D.configured(LTX2TextConnectors, CONNECTORS, TINY_CONNECTORS),
         "vae": D.configured(AutoencoderKLLTX2Video, VAE, TINY_VAE),
         "audio_vae": D.configured(AutoencoderKLLTX2Audio, AUDIO_VAE, TINY_AUDIO_VAE),
         "vocoder": D.configured(LTX2Vocoder, VOCODER, TINY_VOCODER)},
        {"scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER),
         "tokenizer": gemma_tokenizer()},
        kind=ModelKind.DIT, call_args=(CALL_ARGS, TINY_CALL_ARGS), reproduces=REPO,
        sequence_length=MAX_SEQUENCE_LENGTH, frame_rate=FRAME_RATE,
        note="LTX-2 (2.0): one audio-video transformer writes the frames and their sound "
        "(the benchmark keeps the frames; the sound is decoded by the audio VAE and vocoder "
        "in every call, as the pipeline does); classifier-free guidance on a batch of two; "
        "Gemma 3 12B text encoder through the text connectors",
    )
