"""``fastercache``: diffusers' FasterCache (Lv et al. 2024).

Reuse attention outputs between steps with a linear correction, and skip the unconditional
half of the guidance batch on most steps, rebuilding it from the conditional output and the
cached low/high-frequency difference (guidance-distilled models such as FLUX.1 [dev] have no
such batch: attention reuse only). A fixed schedule: the work saved is the same for any
weights. See :mod:`strategies.caches`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.caches.common import CallState, DiffusersCache, unwrap
from strategies.core.base import StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel


@dataclass(frozen=True)
class FasterCacheConfig(StrategyConfig):
    """FasterCache's reuse ranges."""

    spatial: int = param(2, "recompute self-attention every this many steps", low=1, high=100)
    uncond: int = param(5, "compute the unconditional batch every this many steps", low=1, high=100)
    weight: float = param(0.5, "weight of the attention-output extrapolation", low=0.0, high=2.0)

    always_show = ("spatial", "uncond")


def batches_guidance(model: ReferenceModel, denoiser: torch.nn.Module) -> bool:
    """True when the denoiser sees classifier-free guidance as one batch (unconditional and
    conditional halves): guidance above 1 on a model without a guidance input. FLUX.1 [dev]
    takes guidance as an input (``guidance_embeds``, guidance-distilled), so its batch is not
    split and FasterCache only reuses attention there."""
    if float(model.call_args.get("guidance_scale", 1.0)) <= 1.0:
        return False
    config = getattr(denoiser, "config", None)
    return not bool(getattr(config, "guidance_embeds", False))


def batched_inputs() -> list[str]:
    """The denoiser inputs FasterCache halves when it skips the unconditional batch: diffusers'
    list (the default of its config's ``_unconditional_conditional_input_kwargs_identifiers``
    argument) plus ``pooled_projections`` (SD3's pooled text embedding, one row per batch
    entry, which diffusers' list misses)."""
    from diffusers.hooks import FasterCacheConfig as DiffusersFasterCacheConfig

    field = next(
        f for f in dataclasses.fields(DiffusersFasterCacheConfig)
        if f.name == "_unconditional_conditional_input_kwargs_identifiers"
    )
    return [*field.default, "pooled_projections"]


def tensor_format(denoiser: torch.nn.Module) -> str | None:
    """The layout of the denoiser's output in diffusers' FasterCache terms: ``"BCFHW"`` for
    a video transformer with 3-D patches (Wan: channels, frames, rows, columns),
    ``"BCHW"`` for an image transformer with a sample size and 2-D patches; None otherwise
    (packed tokens, as Flux's)."""
    config = getattr(denoiser, "config", None)
    patch = getattr(config, "patch_size", None)
    if isinstance(patch, (tuple, list)) and len(patch) == 3:
        return "BCFHW"
    if patch is not None and getattr(config, "sample_size", None) is not None:
        return "BCHW"
    return None


class FasterCache(DiffusersCache):
    """diffusers' FasterCache: attention reuse plus the CFG cache."""

    name = "fastercache"
    summary = "diffusers FasterCache on a transformer (spatial=2, uncond=5)"
    Config = FasterCacheConfig
    diffusers_config = "FasterCacheConfig"

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        reason = self._needs_timestep(model) or self._one_state_per_call(model)
        if reason:
            return reason
        if batches_guidance(model, denoiser) and tensor_format(denoiser) is None:
            return (
                f"{type(denoiser).__name__} returns neither images (B, C, H, W) nor videos "
                "(B, C, F, H, W) but packed tokens, and FasterCache's frequency split of the "
                "guidance batch needs the spatial layout"
            )
        return self._no_attention(denoiser)

    def make_config(self, model: ReferenceModel, state: CallState | None) -> Any:
        from diffusers.hooks import FasterCacheConfig as DiffusersFasterCacheConfig

        cfg = self.config
        weight = cfg.weight
        return DiffusersFasterCacheConfig(
            _unconditional_conditional_input_kwargs_identifiers=batched_inputs(),
            spatial_attention_block_skip_range=cfg.spatial,
            unconditional_batch_skip_range=cfg.uncond,
            attention_weight_callback=lambda _module: weight,
            tensor_format=tensor_format(unwrap(model.denoiser)) or "BCHW",
            is_guidance_distilled=not batches_guidance(model, unwrap(model.denoiser)),
            current_timestep_callback=self.timestep_source(model, state),
        )

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        import diffusers.utils.logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # "purely experimental" is diffusers' caveat, not ours
        try:
            return super().apply(model)
        finally:
            dlog.set_verbosity(level)
