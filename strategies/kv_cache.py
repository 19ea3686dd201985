"""KV cache off: decode without the key/value cache, to show what the cache buys.

With the cache, each decoding step runs the transformer on the one new token and attends to
the keys and values stored for the earlier ones; without it, every step recomputes the whole
sequence so far (a prompt token plus up to 63 image tokens on ``digits-ar``). The tokens are
the same either way (up to floating-point summation order); only the work per step changes.
This strategy is the uncached reference run: its slowdown against the baseline is the
cache's speedup. The decoding algorithms that feed several tokens per pass (``zipar``,
``sjd``, ``speculative``) need the cache and refuse to share a stack with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.kinds import ModelKind
from strategies.core.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class Config(StrategyConfig):
    """``no-kv-cache`` takes no parameters."""


class NoKVCache(Strategy):
    """Generate with ``use_cache=False``: recompute every past token's keys and values at
    every step."""

    name = "no-kv-cache"
    summary = "decode without the KV cache (the uncached run: shows what the cache buys)"
    Config = Config
    stage = Strategy.STAGE_CACHING
    exclusive_group = "kv cache"

    def supports(self, model) -> str | None:
        if model.kind != ModelKind.AUTOREGRESSIVE or "use_cache" not in model.call_args:
            return (
                f"{model.name} ({model.kind}) has no KV cache to switch off: a diffusion model "
                "runs the whole image through the network at every step and keeps no keys or "
                "values of earlier tokens; the KV cache belongs to autoregressive decoding"
            )
        return super().supports(model)

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.name == "speculative":
            return (
                "speculative decoding verifies draft tokens against the target's KV cache and "
                "drops rejected drafts from it, so it needs the cache on"
            )
        if other.name in ("zipar", "sjd"):
            return f"{other.name} feeds only new tokens each pass and attends to the KV cache"
        return None

    def apply(self, model):
        model.call_args["use_cache"] = False
        model.notes[self.name] = {"use_cache": False}
        return model
