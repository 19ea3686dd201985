"""Fused QKV projections: one matmul for query, key and value instead of three.

Wraps diffusers' own ``fuse_qkv_projections()`` (self-attention: q, k and v fused; cross-
attention: k and v fused), which also switches the attention processors to
``FusedAttnProcessor2_0``. Fewer, larger matmuls help most where kernel launches dominate
(small batches on GPUs). The weights are concatenated, so outputs equal the unfused model's
up to floating-point summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class Config(StrategyConfig):
    """fused-qkv takes no parameters."""


def _added_kv_processors(denoiser) -> list[str]:
    processors = getattr(denoiser, "attn_processors", {}) or {}
    return [name for name, proc in processors.items() if "Added" in type(proc).__name__]


class FusedQKV(Strategy):
    """Fuse the denoiser's attention input projections with diffusers' ``fuse_qkv_projections``."""

    name = "fused-qkv"
    summary = "fuse attention q/k/v projections into one matmul (diffusers' fuse_qkv_projections)"
    Config = Config
    stage = Strategy.STAGE_KERNELS
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
        return None

    def apply(self, model):
        from diffusers.models.attention_processor import Attention

        denoiser = model.denoiser
        denoiser.fuse_qkv_projections()
        fused = sum(
            1 for m in denoiser.modules() if isinstance(m, Attention) and getattr(m, "fused_projections", False)
        )
        model.notes["fused_qkv"] = {"attention_modules_fused": fused}
        return model
