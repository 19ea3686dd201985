"""The video twin of the digits pipelines: 8 frames of a 16 x 16 digit moving as the prompt says,
denoised by diffusers' Wan video transformer.

* ``transformer``: :class:`diffusers.WanTransformer3DModel` (Wan 2.1/2.2's DiT: 3-D rotary
  positions over frames, rows and columns; self-attention over all the clip's tokens,
  cross-attention to the text, timestep modulation), patch (1, 2, 2), so an 8 x 16 x 16 clip
  is 512 tokens. It carries diffusers' :class:`~diffusers.models.cache_utils.CacheMixin`, so
  the cache hooks (FirstBlockCache, Pyramid Attention Broadcast, FasterCache, TaylorSeer)
  apply as on the full-size Wan.
* ``text_encoder``, ``tokenizer``: the 2-layer CLIP text encoder and the word-level tokenizer
  of :mod:`bench.models.digits.unet_pipeline`, over the video prompts' vocabulary
  (:data:`~bench.models.digits.video_data.PROMPT_WORDS`).
* ``scheduler``: DDIM with v-prediction on the cosine schedule, as the image models'.

The sampling loop (guidance, callbacks, per-video noise, cache contexts) is
:class:`~bench.models.digits.unet_pipeline.DigitsPipeline`'s; this class says where the
denoiser is, how to call it, the shape of the noise and how latents become frames.
"""

from __future__ import annotations

from typing import Any

import torch

# diffusers finds how to load a component whose class lives outside diffusers by looking up its
# base classes (ModelMixin...) in the component's module: keep ModelMixin importable from here.
from diffusers import DiffusionPipeline, ModelMixin, WanTransformer3DModel  # noqa: F401
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, PreTrainedTokenizerFast

from bench.core.errors import ModelError
from bench.models.digits.unet_pipeline import (
    DigitsPipeline,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
)
from bench.models.digits.video_data import CANVAS, FRAMES, PROMPT_WORDS


def build_transformer(
    width: int = 96, num_layers: int = 4, num_heads: int = 4, text_dim: int = 64,
    ffn_dim: int = 256,
) -> WanTransformer3DModel:
    """The Wan DiT on 1 x FRAMES x 16 x 16 clips: patch (1, 2, 2), ``width`` wide, ``text_dim``
    text features (projected by Wan's text embedder)."""
    if width % num_heads:
        raise ModelError(f"width {width} is not divisible by {num_heads} heads")
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=num_heads,
        attention_head_dim=width // num_heads,
        in_channels=1,
        out_channels=1,
        text_dim=text_dim,
        freq_dim=64,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64,
    )


class DigitsVideoPipeline(DigitsPipeline):
    """Text-to-video diffusion of moving 16 x 16 digits with a Wan denoiser and
    classifier-free guidance; outputs ``frames`` (N, T, 1, 16, 16) in [0, 1].

    Args:
        transformer: the Wan transformer (1 channel in and out).
        text_encoder: encodes tokenised prompts into the cross-attention context.
        tokenizer: the word-level tokenizer of the video prompts.
        scheduler: any diffusers scheduler compatible with ``v`` prediction.
    """

    model_cpu_offload_seq = "text_encoder->transformer"
    denoiser_attr = "transformer"
    num_frames = FRAMES

    def __init__(
        self,
        transformer: WanTransformer3DModel,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerFast,
        scheduler: KarrasDiffusionSchedulers,
    ) -> None:
        DiffusionPipeline.__init__(self)
        self.register_modules(
            transformer=transformer,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=scheduler,
        )

    def latent_shape(self, batch_size: int) -> tuple[int, ...]:
        """(videos, channels, frames, rows, columns): Wan's layout."""
        return (batch_size, 1, self.num_frames, CANVAS, CANVAS)

    def predict(
        self, model_input: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """One call of the transformer: one timestep per video (keyword arguments, as
        diffusers' cache hooks expect)."""
        timestep = torch.as_tensor(t, device=model_input.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(model_input.shape[0])
        return self.transformer(
            hidden_states=model_input.to(dtype),
            timestep=timestep,
            encoder_hidden_states=embeds.to(dtype),
            return_dict=False,
        )[0].float()

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], *args: Any, num_frames: int = FRAMES,
                 output_type: str = "pt", return_dict: bool = True,
                 **kwargs: Any) -> WanPipelineOutput | tuple:
        """Generate one clip of ``num_frames`` frames per prompt (the other arguments are
        :meth:`DigitsPipeline.__call__`'s; the shipped weights were trained on 8 frames).

        ``output_type="pt"`` gives ``frames`` (N, T, 1, 16, 16) float in [0, 1] on the CPU;
        ``"latent"`` the final sample (N, 1, T, 16, 16) in [-1, 1], unclamped.
        """
        if output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be pt or latent, got {output_type!r}")
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = int(num_frames)
        try:
            latents = super().__call__(prompt, *args, output_type="latent", return_dict=False,
                                       **kwargs)[0]
        finally:
            self.num_frames = FRAMES
        frames = latents
        if output_type == "pt":
            frames = (latents / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4).cpu()
        if not return_dict:
            return (frames,)
        return WanPipelineOutput(frames=frames)


def build_video_pipeline(seed: int = 0, **transformer_kwargs: Any) -> DigitsVideoPipeline:
    """A freshly initialised (untrained) pipeline, as the training script starts from."""
    torch.manual_seed(seed)
    return DigitsVideoPipeline(
        transformer=build_transformer(**transformer_kwargs),
        text_encoder=build_text_encoder(words=PROMPT_WORDS),
        tokenizer=build_tokenizer(words=PROMPT_WORDS),
        scheduler=build_scheduler(),
    )


__all__ = ["DigitsVideoPipeline", "build_transformer", "build_video_pipeline"]
