"""``taylorseer``: diffusers' TaylorSeer cache (Liu et al. 2025).

Compute the hooked modules fully every ``interval`` steps (after ``warmup`` full steps) and
predict their outputs in between with a Taylor expansion of order ``order`` in the step index.
A fixed schedule: the work saved is the same for any weights. See :mod:`strategies.caches`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.caches.common import (
    DiffusersCache,
    attention_modules,
    block_lists,
    text_dropping_blocks,
    unwrap,
)
from strategies.core.base import StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

TAYLORSEER_TARGETS = ("attn", "attn-ff", "lite")
#: dtypes the ``factors_dtype`` parameter may name.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TaylorSeerConfig(StrategyConfig):
    """When TaylorSeer computes, and what it predicts.

    The default interval, 3, is shorter than diffusers' 5 (chosen for 50-step FLUX sampling):
    with 25 steps on ``digits-dit``, interval 5 predicts 17 of 25 steps and costs 27 dB PSNR
    and a third of the prompt adherence; interval 3 computes 11 and keeps 34 dB.
    """

    interval: int = param(3, "steps between full computations", low=1, high=1000, below_model="steps")
    warmup: int = param(3, "full steps before predicting starts", low=0, high=1000, below_model="steps")
    order: int = param(1, "order of the Taylor expansion", low=0, high=4)
    targets: str = param(
        "attn",
        "modules predicted: attention outputs, attention and feed-forward outputs (attn-ff), or lite "
        "(skip whole blocks, predict the output projection)",
        choices=TAYLORSEER_TARGETS,
    )
    factors_dtype: str = param("fp32", "dtype the Taylor factors are kept in", choices=tuple(DTYPES))

    always_show = ("interval",)


def _block_pattern(name: str) -> str:
    """``blocks.3.attn1`` -> the regex of that module in every block of the list."""
    return re.sub(r"^(\w+)\.\d+\.", r"\1\\.\\d+\\.", name)


class TaylorSeer(DiffusersCache):
    """diffusers' TaylorSeer cache: predict module outputs between full steps."""

    name = "taylorseer"
    summary = "diffusers TaylorSeer cache on a transformer (interval=3, order=1)"
    Config = TaylorSeerConfig
    diffusers_config = "TaylorSeerCacheConfig"

    def identifiers(self, denoiser: torch.nn.Module) -> list[str]:
        """Regexes (re.fullmatch) of the modules whose outputs are predicted."""
        lists = [name for name, _ in block_lists(denoiser)]
        targets = set()
        for name, _ in attention_modules(denoiser):
            if name.split(".")[0] in lists:
                targets.add(_block_pattern(name))
        if self.config.targets == "attn-ff":
            for name, _ in denoiser.named_modules():
                head = name.split(".")[0]
                if head in lists and name.count(".") == 2 and name.endswith(".ff"):
                    targets.add(_block_pattern(name))
        return sorted(targets)

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        if self.config.targets == "lite":
            if not hasattr(denoiser, "proj_out"):
                return f"TaylorSeer's lite mode predicts proj_out, which {type(denoiser).__name__} lacks"
            dropping = text_dropping_blocks(denoiser)
            if dropping:
                return (
                    f"{dropping[0]} returns no text stream (context_pre_only, as SD3's last "
                    "joint block), and TaylorSeer's lite mode records the dtype and shape of "
                    "every output of the blocks it skips, which fails on None"
                )
            return None
        if not self.identifiers(denoiser):
            return f"{type(denoiser).__name__} has no attention modules inside transformer block lists"
        return None

    def make_config(self, model: ReferenceModel, state: Any) -> Any:
        from diffusers.hooks import TaylorSeerCacheConfig

        cfg = self.config
        lite = cfg.targets == "lite"
        return TaylorSeerCacheConfig(
            cache_interval=cfg.interval,
            disable_cache_before_step=cfg.warmup,
            max_order=cfg.order,
            taylor_factors_dtype=DTYPES[cfg.factors_dtype],
            cache_identifiers=None if lite else self.identifiers(unwrap(model.denoiser)),
            use_lite_mode=lite,
        )
