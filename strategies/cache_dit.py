"""``cache-dit:dbcache``: cache-dit's DBCache (dual block cache), measured inside accelbench.

cache-dit (PyPI ``cache-dit``, an optional extra: ``pip install 'accelbench[cache-dit]'``)
computes the first ``front`` transformer blocks of every step; when the residual those blocks
produce differs from the previous step's by less than ``threshold`` (relative L1), it reuses
the cached residual of the middle blocks instead of computing them, then computes the last
``back`` blocks. The first ``warmup`` steps always compute; ``max_cached`` caps how many
steps may reuse (-1: no cap). With ``taylorseer`` > 0 its TaylorSeer calibrator predicts the
reused residual by a Taylor expansion of that order instead of repeating it.

cache-dit's own tables report a FLOPs ratio as its speedup; here it is timed, and scored, like
``fbcache`` and ``taylorseer`` (diffusers' counterparts). Its decision depends on the
activations, so on random-weight ``arch:`` models its speedup is not the real model's.

Pipelines cache-dit knows (Flux, SD3, PixArt, Sana, Qwen-Image, ...) are adapted by its own
registry; other pipelines whose blocks map hidden states to hidden states (the embedded
``digits-dit``) through a block adapter over their transformer-block list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strategies.caches.common import block_lists, unwrap
from strategies.core.base import Strategy, StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

METHODS = ("dbcache",)
#: Block classes that take and return hidden states only (cache-dit's ``Pattern_3``).
HIDDEN_ONLY_BLOCKS = ("BasicTransformerBlock",)
INSTALL = "pip install 'accelbench[cache-dit]'"


@dataclass(frozen=True)
class CacheDiTConfig(StrategyConfig):
    """DBCache's parameters, in cache-dit's meaning (its names in brackets)."""

    method: str = param("dbcache", "cache-dit's cache", choices=METHODS)
    front: int = param(1, "blocks always computed first (Fn_compute_blocks)", low=1, high=1000,
                       search=False)
    back: int = param(0, "blocks always computed last (Bn_compute_blocks)", low=0, high=1000,
                      search=False)
    threshold: float = param(0.08, "relative residual change below which a step reuses "
                             "(residual_diff_threshold)", low=0.0, high=1.0)
    warmup: int = param(8, "steps always computed first (max_warmup_steps)", low=0, high=1000,
                        below_model="steps")
    max_cached: int = param(-1, "steps that may reuse at most, -1: no cap (max_cached_steps)",
                            low=-1, high=1000, search=False)
    taylorseer: int = param(0, "order of the TaylorSeer calibrator, 0: off", low=0, high=2)

    always_show = ("threshold",)


def missing() -> str | None:
    """Why cache-dit cannot be used (not installed), or None."""
    try:
        import cache_dit  # noqa: F401
    except ImportError as exc:
        return f"cache-dit is not installed ({exc.msg}); install it with {INSTALL}"
    return None


def quiet() -> None:
    """Keep cache-dit's loggers (one per module, each with its own level) to errors: it logs
    every block match and cache context at INFO."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("cache_dit"):
            logging.getLogger(name).setLevel(logging.ERROR)


class CacheDiT(Strategy):
    """cache-dit's DBCache, optionally with its TaylorSeer calibrator."""

    name = "cache-dit"
    summary = ("cache-dit's DBCache (front/back blocks, residual threshold), optional "
               "TaylorSeer calibrator; needs the cache-dit extra")
    Config = CacheDiTConfig
    stage = Strategy.STAGE_CACHING
    exclusive_group = "feature cache"
    depends_on_activations = True
    positional = "method"

    def supports(self, model: ReferenceModel) -> str | None:
        reason = super().supports(model) or missing()
        if reason:
            return reason
        if model.pipe is None:
            return f"cache-dit caches a diffusers pipeline's transformer; {model.name} has none"
        from cache_dit import BlockAdapterRegister

        denoiser = unwrap(model.denoiser)
        if not BlockAdapterRegister.is_supported(model.pipe):
            blocks = block_lists(denoiser)
            if not blocks:
                return (f"cache-dit does not know {type(model.pipe).__name__}, and "
                        f"{type(denoiser).__name__} has no list of transformer blocks to adapt")
            kind = type(blocks[0][1][0]).__name__
            if kind not in HIDDEN_ONLY_BLOCKS:
                return (f"cache-dit does not know {type(model.pipe).__name__}, and its "
                        f"{kind} blocks have no forward pattern accelbench can name for it")
        total = sum(len(b) for _, b in block_lists(denoiser)) or None
        cfg = self.config
        if total is not None and cfg.front + cfg.back >= total:
            return (f"front={cfg.front} + back={cfg.back} blocks leave none of "
                    f"{type(denoiser).__name__}'s {total} blocks to cache")
        return None

    def _target(self, model: ReferenceModel) -> Any:
        """The pipeline, or a block adapter over its blocks where cache-dit does not know it."""
        from cache_dit import BlockAdapter, BlockAdapterRegister, ForwardPattern

        if BlockAdapterRegister.is_supported(model.pipe):
            return model.pipe
        transformer = model.pipe.transformer
        (_, blocks), = block_lists(transformer)[:1]
        return BlockAdapter(pipe=model.pipe, transformer=transformer, blocks=blocks,
                            forward_pattern=ForwardPattern.Pattern_3)

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        import cache_dit
        from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig

        cfg = self.config
        quiet()
        calibrator = (TaylorSeerCalibratorConfig(taylorseer_order=cfg.taylorseer)
                      if cfg.taylorseer else None)
        cache_dit.enable_cache(
            self._target(model),
            cache_config=DBCacheConfig(
                Fn_compute_blocks=cfg.front, Bn_compute_blocks=cfg.back,
                residual_diff_threshold=cfg.threshold, max_warmup_steps=cfg.warmup,
                max_cached_steps=cfg.max_cached),
            calibrator_config=calibrator,
        )
        return model

    def cached_steps(self, model: ReferenceModel) -> list[int]:
        """The steps of the last generation that reused the cache (cache-dit's statistics)."""
        import cache_dit

        stats = cache_dit.summary(model.pipe, details=False, logging=False) if model.pipe is not None else []
        return list(stats[0].cached_steps) if stats else []
