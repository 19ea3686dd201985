"""The transformer twin of :class:`~bench.models.digits.unet_pipeline.DigitsPipeline`: 1 x 16 x 16
handwritten digits denoised by a DiT with cross-attention to the prompt.

* ``transformer``: :class:`DigitsDiTTransformer`, diffusers' :class:`PixArtTransformer2DModel`
  (PixArt-alpha: a DiT whose blocks are :class:`~diffusers.models.attention.BasicTransformerBlock`
  with self-attention, cross-attention to the text and adaLN-single timestep conditioning),
  patch size 2, so a 16 x 16 image is 64 tokens. diffusers 0.42 gives PixArt's class no
  :class:`~diffusers.models.cache_utils.CacheMixin`; the subclass adds it (nothing else), so
  ``enable_cache`` / ``cache_context`` / ``disable_cache`` work as on diffusers' other
  transformers and the cache hooks (FirstBlockCache, TaylorSeer, Pyramid Attention
  Broadcast, FasterCache) apply unchanged.
* ``text_encoder``, ``tokenizer``, ``scheduler``: built exactly as for ``digits-unet``
  (imported from :mod:`bench.models.digits.unet_pipeline`): the 2-layer CLIP text encoder, the
  word-level tokenizer and DDIM with v-prediction on a cosine schedule. Keeping the UNet's
  scheduler makes the sampling strategies (``steps``, ``scheduler``) mean the same on both
  models.

The sampling loop (guidance, callbacks, per-image noise, cache contexts) is
:class:`DigitsPipeline`'s; this class only says where the denoiser is and how to call it.
"""

from __future__ import annotations

from typing import Any

import torch

# diffusers finds how to load a component whose class lives outside diffusers by looking up its
# base classes (ModelMixin...) in the component's module: keep ModelMixin importable from here.
from diffusers import (
    DiffusionPipeline,
    ModelMixin,  # noqa: F401
    PixArtTransformer2DModel,
)
from diffusers.models.cache_utils import CacheMixin
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, PreTrainedTokenizerFast

from bench.core.errors import ModelError
from bench.models.digits.unet_pipeline import (
    DigitsPipeline,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
)


class DigitsDiTTransformer(PixArtTransformer2DModel, CacheMixin):
    """:class:`PixArtTransformer2DModel` with diffusers' :class:`CacheMixin` mixed in.

    The forward pass, weights and config are PixArt's; the mixin adds ``enable_cache``,
    ``disable_cache`` and ``cache_context`` (diffusers 0.42 gives them to most of its
    transformers, but not to PixArt's).
    """


def build_transformer(
    width: int = 96, num_layers: int = 4, num_heads: int = 4, text_dim: int = 64
) -> DigitsDiTTransformer:
    """The DiT on 1 x 16 x 16 images: patch 2 (64 tokens), ``width`` wide, cross-attention to
    ``text_dim``-wide text embeddings (projected to ``width`` by PixArt's caption projection)."""
    if width % num_heads:
        raise ModelError(f"width {width} is not divisible by {num_heads} heads")
    return DigitsDiTTransformer(
        num_attention_heads=num_heads,
        attention_head_dim=width // num_heads,
        in_channels=1,
        out_channels=1,
        num_layers=num_layers,
        cross_attention_dim=width,
        caption_channels=text_dim,
        sample_size=16,
        patch_size=2,
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        use_additional_conditions=False,
    )


class DigitsDiTPipeline(DigitsPipeline):
    """Text-to-image diffusion of 16 x 16 digits with a DiT denoiser and classifier-free guidance.

    Args:
        transformer: the DiT (1 channel in and out, 16 x 16, 64 tokens).
        text_encoder: encodes tokenised prompts into the cross-attention context.
        tokenizer: the word-level tokenizer of the prompt vocabulary.
        scheduler: any diffusers scheduler compatible with ``v`` prediction.
    """

    model_cpu_offload_seq = "text_encoder->transformer"
    denoiser_attr = "transformer"

    def __init__(
        self,
        transformer: PixArtTransformer2DModel,
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

    def predict(
        self, model_input: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """One call of the transformer: PixArt wants one timestep per image (keyword
        arguments, as diffusers' cache hooks expect)."""
        timestep = torch.as_tensor(t, device=model_input.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(model_input.shape[0])
        added: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
        return self.transformer(
            hidden_states=model_input.to(dtype),
            encoder_hidden_states=embeds.to(dtype),
            timestep=timestep,
            added_cond_kwargs=added,
            return_dict=False,
        )[0].float()


def build_dit_pipeline(seed: int = 0, **transformer_kwargs: Any) -> DigitsDiTPipeline:
    """A freshly initialised (untrained) pipeline, as the training script starts from."""
    torch.manual_seed(seed)
    return DigitsDiTPipeline(
        transformer=build_transformer(**transformer_kwargs),
        text_encoder=build_text_encoder(),
        tokenizer=build_tokenizer(),
        scheduler=build_scheduler(),
    )
