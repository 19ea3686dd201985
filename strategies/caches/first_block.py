"""``fbcache``: diffusers' First Block Cache (ParaAttention; TeaCache's idea).

Run the first transformer block; if its output residual changed by less than ``threshold``
(relative L1) since the last full step, reuse the cached residual of all the other blocks.
Whether a step is skipped depends on the values the model computes
(``depends_on_activations``). See :mod:`strategies.caches` for what the caches share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.caches.common import (
    DiffusersCache,
    register_hook,
    stack_residual_reason,
    text_dropping_blocks,
    unwrap,
)
from strategies.core.base import StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

_TEXT_PASSTHROUGH = "accelbench_text_passthrough"


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


def _text_passthrough_hook() -> Any:
    """A diffusers ``ModelHook`` for a joint block that returns no text stream
    (``context_pre_only``): it returns the block's text input in that place instead of None."""
    from diffusers.hooks import ModelHook

    class TextPassthrough(ModelHook):
        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            out = self.fn_ref.original_forward(*args, **kwargs)
            if isinstance(out, tuple) and len(out) == 2 and out[0] is None:
                text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
                return text, out[1]
            return out

    return TextPassthrough()


class FBCache(DiffusersCache):
    """diffusers' FirstBlockCache: skip all but the first block while its output barely moves."""

    name = "fbcache"
    summary = "diffusers FirstBlockCache on a transformer (threshold=0.1)"
    Config = FBCacheConfig
    diffusers_config = "FirstBlockCacheConfig"
    #: Whether a step is skipped depends on how much the first block's residual changed.
    depends_on_activations = True

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        return stack_residual_reason(denoiser, "FirstBlockCache")

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        """Put FirstBlockCache on the denoiser; a block that drops the text stream (SD3's last
        joint block returns None for it) first gets a hook that hands its text input through
        instead, so that the cache's residuals of the text stream have something to subtract
        (SD3's transformer never reads the text stream after that block)."""
        denoiser = unwrap(model.denoiser)
        dropping = text_dropping_blocks(denoiser)
        for name in dropping:
            register_hook(denoiser.get_submodule(name), _text_passthrough_hook(), _TEXT_PASSTHROUGH)
        model = super().apply(model)
        if dropping:
            model.notes[self.name]["text_passthrough"] = dropping
        return model

    def make_config(self, model: ReferenceModel, state: Any) -> Any:
        from diffusers.hooks import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=self.config.threshold)
