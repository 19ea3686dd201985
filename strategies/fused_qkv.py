"""Fused QKV projections: one matmul for query, key and value instead of three.

Wraps diffusers' own ``fuse_qkv_projections()`` (self-attention: q, k and v fused; cross-
attention: k and v fused), which also switches the attention processors to
``FusedAttnProcessor2_0`` (SD3: ``FusedJointAttnProcessor2_0``; FLUX's processor reads the
fused projection itself). Fewer, larger matmuls help most where kernel launches dominate
(small batches on GPUs). The weights are concatenated, so outputs equal the unfused model's
up to floating-point summation order.

Sana: diffusers 0.42's ``fuse_qkv_projections`` fuses nothing there (its attention modules are
the classic ones, which only a denoiser's own ``fuse_qkv_projections`` fuses, and its linear
self-attention and cross-attention processors have no fused form). Both processors project
q, k and v from their raw inputs, once each, so the strategy fuses those modules' projections
with diffusers' ``Attention.fuse_projections`` and runs the unchanged processor on the
projections of the one fused matmul (:class:`FusedProjections`). Other processors without a
fused form are refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from strategies.core.base import Strategy, StrategyConfig, StrategyError

#: Processors that project q, k and v from the attention's raw inputs, once each, so they run
#: unchanged on the outputs of a fused projection (:class:`FusedProjections`).
WRAPPABLE = ("SanaLinearAttnProcessor2_0", "SanaAttnProcessor2_0")


@dataclass(frozen=True)
class Config(StrategyConfig):
    """fused-qkv takes no parameters."""


def _added_kv_processors(denoiser) -> list[str]:
    processors = getattr(denoiser, "attn_processors", {}) or {}
    return [name for name, proc in processors.items() if "Added" in type(proc).__name__]


class _Projected:
    """An attention module as a processor sees it, its q/k/v projections already computed."""

    def __init__(self, attn: torch.nn.Module, query, key, value) -> None:
        self._attn = attn
        self.to_q = lambda _x: query
        self.to_k = lambda _x: key
        self.to_v = lambda _x: value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attn, name)


class FusedProjections:
    """A diffusers attention processor wrapper: computes q, k and v with the module's fused
    projection (``to_qkv`` for self-attention, ``to_q`` and ``to_kv`` for cross-attention) and
    runs the wrapped processor on them."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if getattr(attn, "to_qkv", None) is not None and encoder_hidden_states is None:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        elif getattr(attn, "to_kv", None) is not None:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:  # not the call the fusion was made for: the plain projections
            query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        projected = _Projected(attn, query, key, value)
        return self.processor(projected, hidden_states, encoder_hidden_states, attention_mask)


class FusedQKV(Strategy):
    """Fuse the denoiser's attention input projections with diffusers' ``fuse_qkv_projections``."""

    name = "fused-qkv"
    summary = "fuse attention q/k/v projections into one matmul (diffusers' fuse_qkv_projections)"
    Config = Config
    stage = Strategy.STAGE_KERNELS
    rewrites = ("denoiser",)
    exclusive_group = "qkv fusion"

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        denoiser = model.denoiser
        if not hasattr(denoiser, "fuse_qkv_projections"):
            return (
                f"{type(denoiser).__name__} has no fuse_qkv_projections() in this diffusers "
                "version"
            )
        added = _added_kv_processors(denoiser)
        if added:
            return f"diffusers cannot fuse models with added KV projections ({added[0]}...)"
        if not fusable(denoiser) and not wrappable(denoiser):
            processors = sorted({type(p).__name__ for p in denoiser.attn_processors.values()})
            return (
                f"{type(denoiser).__name__}.fuse_qkv_projections() fuses nothing in this "
                f"diffusers: its attention modules are not fusable and have no fused processor "
                f"({', '.join(processors)})"
            )
        return None

    def apply(self, model):
        denoiser = model.denoiser
        wrapped = 0
        if fusable(denoiser):
            denoiser.fuse_qkv_projections()
        else:
            for module in wrappable(denoiser):
                with torch.no_grad():
                    module.fuse_projections(fuse=True)
                module.set_processor(FusedProjections(module.processor))
                wrapped += 1
        fused = sum(1 for m in denoiser.modules() if getattr(m, "fused_projections", False) is True)
        if not fused:
            raise StrategyError(f"{type(denoiser).__name__}.fuse_qkv_projections() fused nothing")
        model.notes["fused_qkv"] = {
            "attention_modules_fused": fused,
            "how": "this strategy's FusedProjections around the module's processor"
            if wrapped
            else "diffusers' fuse_qkv_projections",
        }
        return model


def fusable(denoiser) -> int:
    """How many attention modules ``denoiser.fuse_qkv_projections()`` fuses.

    diffusers has two ways: a denoiser class with its own ``fuse_qkv_projections`` (UNets,
    SD3, PixArt) fuses every classic ``Attention`` module and switches to the fused
    processors; the generic ``AttentionMixin`` one only fuses attention modules that declare
    they can be (``AttentionModuleMixin`` with ``_supports_qkv_fusion``, e.g. FLUX's, whose
    processor then uses the fused projection). Sana inherits the generic one but its
    attention modules are classic ones, so nothing would be fused.
    """
    from diffusers.models.attention import AttentionMixin, AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    method = getattr(type(denoiser), "fuse_qkv_projections", None)
    own = method is not AttentionMixin.fuse_qkv_projections
    count = 0
    for m in denoiser.modules():
        if isinstance(m, AttentionModuleMixin) and getattr(m, "_supports_qkv_fusion", False):
            count += 1
        elif own and isinstance(m, Attention):
            count += 1
    return count


def wrappable(denoiser) -> list[torch.nn.Module]:
    """Classic attention modules whose processor (one of :data:`WRAPPABLE`) can run on fused
    projections through :class:`FusedProjections`."""
    from diffusers.models.attention_processor import Attention

    return [
        m
        for m in denoiser.modules()
        if isinstance(m, Attention)
        and not getattr(m, "fused_projections", False)
        and type(getattr(m, "processor", None)).__name__ in WRAPPABLE
    ]
