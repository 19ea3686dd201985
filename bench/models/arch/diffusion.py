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

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from bench.models.hub import HubModel
from bench.models.registry import ModelError

#: Why arch models have no data, for every method that would need it.
NO_DATA = (
    "random-weight architecture models have no data: their images mean nothing, so "
    "distribution quality (FID/KID), prompt adherence and training are unavailable on them; "
    "fidelity to the same model's baseline (numerical deviation) is the one meaningful "
    "quality number"
)


@dataclass
class ArchModel(HubModel):
    """A real diffusers pipeline built from a published configuration with random weights.

    Attributes (besides :class:`~bench.models.base.ReferenceModel`'s):
        family: the architecture family (``sdxl``...).
        size: ``full`` (the published sizes) or ``tiny`` (same classes and layouts, scaled
            down for CPUs).
        reproduces: the published model whose configuration is built (a hub repo id).
        note: what else a reader of the results should know (e.g. which variant).
    """

    family: str = ""
    size: str = "full"
    reproduces: str = ""
    note: str = ""

    def real_images(self, split: str = "heldout") -> torch.Tensor:
        raise ModelError(f"{self.name}: {NO_DATA}")

    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        raise ModelError(f"{self.name}: {NO_DATA}")

    def describe(self) -> dict[str, Any]:
        """The base summary plus the published model reproduced and the size."""
        info = super().describe()
        size = (
            "published sizes"
            if self.size == "full"
            else "tiny variant: same classes and layouts, scaled down"
        )
        info.update(
            {
                "family": self.family,
                "size": self.size,
                "reproduces": self.reproduces,
                "architecture": f"{self.reproduces} ({size}), random weights",
            }
        )
        if self.note:
            info["note"] = self.note
        return info


@contextlib.contextmanager
def building(device: str | torch.device, seed: int, component: str) -> Iterator[None]:
    """Build one component: its random initialisation is seeded from ``seed`` and the
    component's name (so components do not depend on each other's build order), and its
    tensors are created on ``device`` (``meta``: shapes only, no memory)."""
    torch.manual_seed(seed * 1_000_003 + zlib.crc32(component.encode()))
    with torch.device(device):
        yield


def is_meta(device: str | torch.device) -> bool:
    """True for the ``meta`` device (shapes without storage)."""
    return torch.device(device).type == "meta"


def finish(
    pipe: Any,
    *,
    family: str,
    size: str,
    device: str,
    kind: str,
    call_args: dict[str, Any],
    reproduces: str,
    note: str = "",
) -> ArchModel:
    """Wrap ``pipe`` as an :class:`ArchModel`: progress bars off, every module in eval mode
    (parameters keep ``requires_grad``, as a loaded pipeline's do: strategies that trace the
    autograd graph, such as structural pruning, need it)."""
    pipe.set_progress_bar_config(disable=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return ArchModel(
        name=f"arch:{family}" + ("@tiny" if size == "tiny" else ""),
        kind=kind,
        device=torch.device(device),
        dtype=torch.float32,
        call_args=dict(call_args),
        pipe=pipe,
        family=family,
        size=size,
        reproduces=reproduces,
        note=note,
    )


def check_size(size: str) -> None:
    """Refuse sizes other than ``full`` and ``tiny``."""
    if size not in ("full", "tiny"):
        raise ModelError(f"unknown size {size!r}; architecture models come in 'full' and 'tiny'")


# -- shared components ---------------------------------------------------------------------
def clip_text_encoder(config: dict[str, Any], projection: bool) -> torch.nn.Module:
    """A CLIP text encoder from ``config`` (``CLIPTextConfig`` fields): ``CLIPTextModel``, or
    ``CLIPTextModelWithProjection`` (the pooled, projected output SDXL's second and SD3's
    encoders give)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(CLIPTextConfig(**config))


def t5_encoder(config: dict[str, Any]) -> torch.nn.Module:
    """A ``T5EncoderModel`` from ``config`` (``T5Config`` fields)."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**config))


def autoencoder_kl(config: dict[str, Any]) -> torch.nn.Module:
    """An ``AutoencoderKL`` from ``config``."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


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
    "building",
    "check_size",
    "clip_text_encoder",
    "finish",
    "is_meta",
    "kl_blocks",
    "t5_encoder",
]
