"""diffusers' own cache hooks on transformer denoisers: FirstBlockCache, TaylorSeer, Pyramid
Attention Broadcast and FasterCache, one registry name each.

Each strategy builds the technique's diffusers config and calls ``denoiser.enable_cache(config)``
(:class:`diffusers.models.cache_utils.CacheMixin`); nothing of the techniques is reimplemented.
The denoising loop of the embedded pipelines wraps every denoiser call in
``denoiser.cache_context("cond_uncond")`` (guidance batched) as diffusers' pipelines do, and
``maybe_free_model_hooks()`` at the end of each call resets the hooks' state, so every
generation starts from an empty cache.

* ``fbcache`` - First Block Cache (ParaAttention; TeaCache's idea): run the first transformer
  block; if its output residual changed by less than ``threshold`` (relative L1) since the last
  full step, reuse the cached residual of all the other blocks.
* ``taylorseer`` - TaylorSeer (Liu et al. 2025): compute the hooked modules fully every
  ``interval`` steps (after ``warmup`` full steps) and predict their outputs in between with a
  Taylor expansion of order ``order`` in the step index.
* ``pab`` - Pyramid Attention Broadcast (Zhao et al. 2024): inside a timestep window, reuse
  self-attention outputs for ``spatial`` steps and cross-attention outputs for ``cross`` steps
  (cross-attention changes least, so it is broadcast furthest).
* ``fastercache`` - FasterCache (Lv et al. 2024): reuse attention outputs between steps with a
  linear correction, and skip the unconditional half of the guidance batch on most steps,
  rebuilding it from the conditional output and the cached low/high-frequency difference.

Only the techniques this diffusers offers are registered. A denoiser without ``CacheMixin``
(e.g. diffusers 0.42's ``UNet2DConditionModel``) or without the block or attention layout a
technique hooks is refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.base import Strategy, StrategyConfig, param

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "_orig_mod", module)


def _attention_modules(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from diffusers.hooks._common import _ATTENTION_CLASSES

    return [(n, m) for n, m in denoiser.named_modules() if isinstance(m, _ATTENTION_CLASSES)]


def _block_lists(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return [
        (name, child)
        for name, child in denoiser.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
    ]


class _DiffusersCache(Strategy):
    """Common checks and application of one diffusers cache hook."""

    stage = Strategy.STAGE_CACHING
    exclusive_group = "feature cache"
    #: Name of the technique's config class in ``diffusers.hooks``.
    diffusers_config: ClassVar[str]

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        import diffusers.hooks
        from diffusers.models.cache_utils import CacheMixin

        if not hasattr(diffusers.hooks, self.diffusers_config):
            import diffusers

            return f"diffusers {diffusers.__version__} has no {self.diffusers_config}"
        denoiser = _unwrap(model.denoiser)
        if not isinstance(denoiser, CacheMixin):
            hint = " (for a UNet use deepcache)" if model.kind == "diffusion-unet" else ""
            return (
                f"{type(denoiser).__name__} has no diffusers CacheMixin (enable_cache), which "
                f"diffusers gives to its transformer denoisers{hint}"
            )
        if denoiser.is_cache_enabled:
            return f"{type(denoiser).__name__} already has a cache enabled"
        return self._supports_layout(model, denoiser)

    def _supports_layout(self, model, denoiser: torch.nn.Module) -> str | None:
        return None

    def _needs_timestep(self, model) -> str | None:
        if model.pipe is None or not hasattr(type(model.pipe), "current_timestep"):
            return (
                f"{self.name} needs the pipeline's current timestep (pipe.current_timestep), "
                f"which {type(model.pipe).__name__} does not expose"
            )
        return None

    def make_config(self, model) -> Any:
        """The diffusers config object for ``model``."""
        raise NotImplementedError

    def apply(self, model):
        denoiser = _unwrap(model.denoiser)
        config = self.make_config(model)
        denoiser.enable_cache(config)
        model.notes[self.name] = {"diffusers_config": repr(config).replace("\n", "")}
        return model


# -- FirstBlockCache ---------------------------------------------------------------------
@dataclass(frozen=True)
class FBCacheConfig(StrategyConfig):
    """First Block Cache's one knob.

    The default, 0.1, is twice diffusers' own 0.05: on ``digits-dit`` (25 DDIM steps) 0.05
    never reuses anything, while 0.1 reuses the cached blocks on 8 of 25 steps at 39.6 dB
    PSNR against the plain model (0.2: 15 steps, 30.3 dB).
    """

    threshold: float = param(
        0.1,
        "reuse the other blocks while the first block's residual changes less than this "
        "(relative L1; 0 never reuses)",
        low=0.0,
        high=10.0,
    )

    always_show = ("threshold",)


class FBCache(_DiffusersCache):
    """diffusers' FirstBlockCache: skip all but the first block while its output barely moves."""

    name = "fbcache"
    summary = "diffusers FirstBlockCache on a transformer (threshold=0.1)"
    Config = FBCacheConfig
    diffusers_config = "FirstBlockCacheConfig"

    def _supports_layout(self, model, denoiser) -> str | None:
        from diffusers.hooks._helpers import TransformerBlockRegistry

        blocks = [b for _, lst in _block_lists(denoiser) for b in lst]
        if len(blocks) < 2:
            return f"{type(denoiser).__name__} has {len(blocks)} transformer block(s); FirstBlockCache needs 2 or more"
        for block in blocks:
            try:
                TransformerBlockRegistry.get(type(block))
            except ValueError:
                return f"{type(block).__name__} is not in diffusers' TransformerBlockRegistry"
        return None

    def make_config(self, model):
        from diffusers.hooks import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=self.config.threshold)


# -- TaylorSeer --------------------------------------------------------------------------
TAYLORSEER_TARGETS = ("attn", "attn-ff", "lite")


@dataclass(frozen=True)
class TaylorSeerConfig(StrategyConfig):
    """When TaylorSeer computes, and what it predicts.

    The default interval, 3, is shorter than diffusers' 5 (chosen for 50-step FLUX sampling):
    with 25 steps on ``digits-dit``, interval 5 predicts 17 of 25 steps and costs 27 dB PSNR
    and a third of the prompt adherence; interval 3 computes 11 and keeps 34 dB.
    """

    interval: int = param(3, "steps between full computations", low=1, high=1000)
    warmup: int = param(3, "full steps before predicting starts", low=0, high=1000)
    order: int = param(1, "order of the Taylor expansion", low=0, high=4)
    targets: str = param(
        "attn",
        "modules predicted: attention outputs, attention and feed-forward outputs (attn-ff), or lite "
        "(skip whole blocks, predict the output projection)",
        choices=TAYLORSEER_TARGETS,
    )
    factors_dtype: str = param("fp32", "dtype the Taylor factors are kept in", choices=tuple(_DTYPES))

    always_show = ("interval",)


class TaylorSeer(_DiffusersCache):
    """diffusers' TaylorSeer cache: predict module outputs between full steps."""

    name = "taylorseer"
    summary = "diffusers TaylorSeer cache on a transformer (interval=3, order=1)"
    Config = TaylorSeerConfig
    diffusers_config = "TaylorSeerCacheConfig"

    def identifiers(self, denoiser) -> list[str]:
        """Regexes (re.fullmatch) of the modules whose outputs are predicted."""
        lists = [name for name, _ in _block_lists(denoiser)]
        targets = set()
        for name, _ in _attention_modules(denoiser):
            head = name.split(".")[0]
            if head in lists:
                targets.add(re.sub(r"^(\w+)\.\d+\.", r"\1\\.\\d+\\.", name))
        if self.config.targets == "attn-ff":
            for name, _ in denoiser.named_modules():
                head = name.split(".")[0]
                if head in lists and name.count(".") == 2 and name.endswith(".ff"):
                    targets.add(re.sub(r"^(\w+)\.\d+\.", r"\1\\.\\d+\\.", name))
        return sorted(targets)

    def _supports_layout(self, model, denoiser) -> str | None:
        if self.config.targets == "lite":
            if not hasattr(denoiser, "proj_out"):
                return f"TaylorSeer's lite mode predicts proj_out, which {type(denoiser).__name__} lacks"
            return None
        if not self.identifiers(denoiser):
            return f"{type(denoiser).__name__} has no attention modules inside transformer block lists"
        return None

    def make_config(self, model):
        from diffusers.hooks import TaylorSeerCacheConfig

        cfg = self.config
        lite = cfg.targets == "lite"
        return TaylorSeerCacheConfig(
            cache_interval=cfg.interval,
            disable_cache_before_step=cfg.warmup,
            max_order=cfg.order,
            taylor_factors_dtype=_DTYPES[cfg.factors_dtype],
            cache_identifiers=None if lite else self.identifiers(_unwrap(model.denoiser)),
            use_lite_mode=lite,
        )


# -- Pyramid Attention Broadcast ---------------------------------------------------------
@dataclass(frozen=True)
class PABConfig(StrategyConfig):
    """Broadcast ranges and the timestep window."""

    spatial: int = param(2, "reuse self-attention outputs this many steps (1: never)", low=1, high=100)
    cross: int = param(6, "reuse cross-attention outputs this many steps (1: never)", low=1, high=100)
    t_low: int = param(100, "broadcast only at timesteps above this", low=-1, high=1000)
    t_high: int = param(800, "and below this", low=0, high=1001)

    always_show = ("spatial", "cross")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.t_low >= self.t_high:
            from strategies.base import StrategyError

            raise StrategyError(f"t_low={self.t_low} must be below t_high={self.t_high}")


class PAB(_DiffusersCache):
    """diffusers' Pyramid Attention Broadcast."""

    name = "pab"
    summary = "diffusers Pyramid Attention Broadcast on a transformer (spatial=2, cross=6)"
    Config = PABConfig
    diffusers_config = "PyramidAttentionBroadcastConfig"

    def _supports_layout(self, model, denoiser) -> str | None:
        reason = self._needs_timestep(model)
        if reason:
            return reason
        if not _attention_modules(denoiser):
            return f"{type(denoiser).__name__} has no diffusers attention modules"
        return None

    def make_config(self, model):
        from diffusers.hooks import PyramidAttentionBroadcastConfig

        cfg = self.config
        pipe = model.pipe
        window = (cfg.t_low, cfg.t_high)
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=cfg.spatial if cfg.spatial > 1 else None,
            cross_attention_block_skip_range=cfg.cross if cfg.cross > 1 else None,
            spatial_attention_timestep_skip_range=window,
            cross_attention_timestep_skip_range=window,
            current_timestep_callback=lambda: pipe.current_timestep,
        )

    def apply(self, model):
        if self.config.spatial == 1 and self.config.cross == 1:
            # diffusers would fall back to spatial=2: keep "1" meaning "never reuse".
            model.notes[self.name] = {"note": "spatial=1 and cross=1: nothing is broadcast"}
            return model
        return super().apply(model)


# -- FasterCache -------------------------------------------------------------------------
@dataclass(frozen=True)
class FasterCacheConfig(StrategyConfig):
    """FasterCache's reuse ranges."""

    spatial: int = param(2, "recompute self-attention every this many steps", low=1, high=100)
    uncond: int = param(5, "compute the unconditional batch every this many steps", low=1, high=100)
    weight: float = param(0.5, "weight of the attention-output extrapolation", low=0.0, high=2.0)

    always_show = ("spatial", "uncond")


class FasterCache(_DiffusersCache):
    """diffusers' FasterCache: attention reuse plus the CFG cache."""

    name = "fastercache"
    summary = "diffusers FasterCache on a transformer (spatial=2, uncond=5)"
    Config = FasterCacheConfig
    diffusers_config = "FasterCacheConfig"

    def _supports_layout(self, model, denoiser) -> str | None:
        reason = self._needs_timestep(model)
        if reason:
            return reason
        config = getattr(denoiser, "config", None)
        if getattr(config, "sample_size", None) is None or getattr(config, "patch_size", None) is None:
            return (
                f"{type(denoiser).__name__} does not return image-shaped (B, C, H, W) output, "
                "which FasterCache's frequency split of the guidance batch needs"
            )
        if not _attention_modules(denoiser):
            return f"{type(denoiser).__name__} has no diffusers attention modules"
        return None

    def make_config(self, model):
        from diffusers.hooks import FasterCacheConfig as DiffusersFasterCacheConfig

        cfg = self.config
        pipe = model.pipe
        guidance = float(model.call_args.get("guidance_scale", 1.0))
        weight = cfg.weight
        return DiffusersFasterCacheConfig(
            spatial_attention_block_skip_range=cfg.spatial,
            unconditional_batch_skip_range=cfg.uncond,
            attention_weight_callback=lambda _module: weight,
            tensor_format="BCHW",
            is_guidance_distilled=guidance <= 1.0,
            current_timestep_callback=lambda: pipe.current_timestep,
        )

    def apply(self, model):
        import diffusers.utils.logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # "purely experimental" is diffusers' caveat, not ours
        try:
            return super().apply(model)
        finally:
            dlog.set_verbosity(level)
