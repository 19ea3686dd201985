"""What the diffusion architecture families share: the model class, seeded construction on any
device (``meta`` included), and builders for the components several families use (CLIP and T5
text encoders, the KL autoencoder).

A family module writes its published configuration's numbers down, builds every component from
them inside :func:`building` (which seeds the random initialisation and puts the tensors on
the target device, or on ``meta`` where nothing is allocated), assembles the real diffusers
pipeline and hands it to :func:`finish`.

The tiny variants' default call (batch 1, 10 steps, classifier-free guidance where the model
uses it), measured on one thread of a shared 2-core CPU under load (so upper bounds), median
of 5: PixArt-Sigma 0.08 s, Sana 0.09 s, SD3 0.25 s, FLUX 0.33 s, SD 1.5 0.43 s, SDXL 0.69 s
(its 70 transformer blocks per UNet call, the real 1/2/10 depth pattern, cost most). Re-measure
with ``OMP_NUM_THREADS=1 python tests/benchmarks/scripts/arch_compat.py --time 5 --stacks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKL
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
)

from bench.core.kinds import ModelKind
from bench.models.arch.common import (
    NO_DATA,
    ArchIdentity,
    arch_fields,
    building,
    check_size,
    component_seed,
    is_meta,
)
from bench.models.hub import HubModel


@dataclass
class ArchModel(ArchIdentity, HubModel):
    """A real diffusers pipeline built from a published configuration with random weights
    (what is built: :class:`~bench.models.arch.common.ArchIdentity`)."""

    def describe(self) -> dict[str, Any]:
        """The base summary plus the published model reproduced and the size."""
        return {**super().describe(), **self.identity()}


def finish(
    pipe: Any,
    *,
    family: str,
    size: str,
    device: str,
    kind: ModelKind,
    call_args: dict[str, Any],
    reproduces: str,
    note: str = "",
    frame_rate: float | None = None,
) -> ArchModel:
    """Wrap ``pipe`` as an :class:`ArchModel`: progress bars off, every module in eval mode
    (parameters keep ``requires_grad``, as a loaded pipeline's do: strategies that trace the
    autograd graph, such as structural pruning, need it). A video model gives its output
    ``frame_rate`` (frames per second)."""
    pipe.set_progress_bar_config(disable=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return ArchModel(**arch_fields(family, size, device, kind, call_args, reproduces, note),
                     pipe=pipe, frame_rate=frame_rate)


#: Builds one component at the full (False) or the tiny (True) size.
ComponentBuilder = Callable[[bool], torch.nn.Module]


def configured(cls: Callable[..., torch.nn.Module], full: dict[str, Any],
               tiny: dict[str, Any]) -> ComponentBuilder:
    """A builder of ``cls(**config)`` from the ``full`` or the ``tiny`` configuration."""
    return lambda is_tiny: cls(**(tiny if is_tiny else full))


def build_pipeline(
    pipeline_class: type,
    family: str,
    size: str,
    device: str,
    seed: int,
    components: dict[str, ComponentBuilder],
    others: dict[str, Any],
    *,
    kind: ModelKind,
    call_args: tuple[dict[str, Any], dict[str, Any]],
    reproduces: str,
    sequence_length: int | None = None,
    note: str = "",
    frame_rate: float | None = None,
) -> ArchModel:
    """The ``arch:<family>`` model at ``size``: every entry of ``components`` built inside
    :func:`building` (seeded by its name, on ``device``), then ``pipeline_class(**components,
    **others)`` wrapped by :func:`finish`. ``call_args`` is (full, tiny); a
    ``sequence_length`` becomes the call's ``max_sequence_length`` (the text encoder's); a
    video model gives its output ``frame_rate``."""
    check_size(size)
    tiny = size == "tiny"
    modules = {}
    for name, build in components.items():
        with building(device, seed, name):
            modules[name] = build(tiny)
    pipe = pipeline_class(**modules, **others)
    args = dict(call_args[1] if tiny else call_args[0])
    if sequence_length is not None:
        args["max_sequence_length"] = sequence_length
    return finish(pipe, family=family, size=size, device=device, kind=kind, call_args=args,
                  reproduces=reproduces, note=note, frame_rate=frame_rate)


# -- shared components ---------------------------------------------------------------------
def clip_text_encoder(config: dict[str, Any], projection: bool) -> torch.nn.Module:
    """A CLIP text encoder from ``config`` (``CLIPTextConfig`` fields): ``CLIPTextModel``, or
    ``CLIPTextModelWithProjection`` (the pooled, projected output SDXL's second and SD3's
    encoders give)."""

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(CLIPTextConfig(**config))


def t5_encoder(config: dict[str, Any]) -> torch.nn.Module:
    """A ``T5EncoderModel`` from ``config`` (``T5Config`` fields)."""
    return T5EncoderModel(T5Config(**config))


def autoencoder_kl(config: dict[str, Any]) -> torch.nn.Module:
    """An ``AutoencoderKL`` from ``config``."""
    return AutoencoderKL(**config)


def clip_l(projection: bool) -> ComponentBuilder:
    """A builder of CLIP ViT-L/14's text tower (:data:`CLIP_L`, tiny: :data:`TINY_CLIP`)."""
    return lambda tiny: clip_text_encoder(TINY_CLIP if tiny else CLIP_L, projection=projection)


def clip_bigg() -> ComponentBuilder:
    """A builder of OpenCLIP ViT-bigG/14's text tower with projection (:data:`CLIP_BIGG`)."""
    return lambda tiny: clip_text_encoder(TINY_CLIP_BIGG if tiny else CLIP_BIGG, projection=True)


def t5_xxl() -> ComponentBuilder:
    """A builder of T5 v1.1 XXL's encoder (:data:`T5_XXL`, tiny: :data:`TINY_T5`)."""
    return lambda tiny: t5_encoder(TINY_T5 if tiny else T5_XXL)


def kl_vae(full: dict[str, Any], tiny: dict[str, Any]) -> ComponentBuilder:
    """A builder of the KL autoencoder from its ``full`` or ``tiny`` configuration."""
    return configured(AutoencoderKL, full, tiny)


def kl_blocks(n: int) -> dict[str, tuple[str, ...]]:
    """``n`` encoder and decoder blocks of the Stable Diffusion KL autoencoder."""
    return {
        "down_block_types": ("DownEncoderBlock2D",) * n,
        "up_block_types": ("UpDecoderBlock2D",) * n,
    }


#: CLIP ViT-L/14's text tower (openai/clip-vit-large-patch14, as shipped in
#: stable-diffusion-v1-5 text_encoder/config.json and SDXL/SD3/Flux ``text_encoder``).
CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

#: OpenCLIP ViT-bigG/14's text tower (stable-diffusion-xl-base-1.0 text_encoder_2/config.json,
#: also SD3's text_encoder_2).
CLIP_BIGG = {
    **CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
}

#: T5 v1.1 XXL's encoder (google/t5-v1_1-xxl; SD3's text_encoder_3, Flux's text_encoder_2 and
#: PixArt-Sigma's text_encoder config.json).
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
}

#: The Stable Diffusion KL autoencoder's layout (stable-diffusion-v1-5 vae/config.json; SDXL,
#: SD3 and Flux keep it and change the latent channels and scaling).
SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    **kl_blocks(4),
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}



def latent16_vae(scaling_factor: float, shift_factor: float) -> dict[str, Any]:
    """The KL autoencoder of SD3 and Flux (their ``vae/config.json``): the Stable Diffusion
    layout with 16 latent channels, no quant convs, the model's own scaling and shift."""
    return {
        **SD_VAE,
        "sample_size": 1024,
        "latent_channels": 16,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "scaling_factor": scaling_factor,
        "shift_factor": shift_factor,
    }


#: The tiny counterparts: same classes and layouts (four VAE levels: 8x downsampling;
#: CLIP with 77 positions and the real vocabulary; gated T5 with relative attention).
TINY_CLIP = {
    **CLIP_L,
    "hidden_size": 32,
    "intermediate_size": 64,
    "projection_dim": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
TINY_CLIP_BIGG = {
    **TINY_CLIP,
    "hidden_size": 48,
    "intermediate_size": 96,
    "projection_dim": 48,
    "num_attention_heads": 3,
    "hidden_act": "gelu",
}
TINY_T5 = {
    **T5_XXL,
    "d_model": 128,
    "d_kv": 16,
    "d_ff": 256,
    "num_layers": 2,
    "num_heads": 4,
}
#: The entries that make the tiny VAE tiny (the rest - latent channels, scaling - is the
#: family's own).
TINY_VAE_SIZES = ("block_out_channels", "layers_per_block", "norm_num_groups", "sample_size")
TINY_VAE = {
    **SD_VAE,
    "block_out_channels": (8, 16, 16, 16),
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
}


def tiny_vocab(size: int) -> int:
    """Embedding rows of a tiny text encoder over an offline tokenizer of ``size`` ids:
    ``size`` rounded up to a multiple of 64."""
    return -(-size // 64) * 64


def tiny_vae(vae: dict[str, Any]) -> dict[str, Any]:
    """``vae`` (a family's own KL autoencoder) at the tiny sizes of :data:`TINY_VAE`."""
    return {**vae, **{k: TINY_VAE[k] for k in TINY_VAE_SIZES}}


__all__ = [
    "CLIP_BIGG",
    "CLIP_L",
    "NO_DATA",
    "SD_VAE",
    "T5_XXL",
    "TINY_CLIP",
    "TINY_CLIP_BIGG",
    "TINY_T5",
    "TINY_VAE",
    "TINY_VAE_SIZES",
    "ArchModel",
    "autoencoder_kl",
    "build_pipeline",
    "building",
    "clip_bigg",
    "clip_l",
    "configured",
    "check_size",
    "component_seed",
    "clip_text_encoder",
    "finish",
    "is_meta",
    "kl_blocks",
    "kl_vae",
    "latent16_vae",
    "t5_encoder",
    "t5_xxl",
    "tiny_vae",
    "tiny_vocab",
]
