"""What the strategies that replace an autoregressive model's decoding loop share.

``zipar``, ``sjd`` and ``speculative`` each install a decoder (``model.set_decoder``) that
feeds several tokens per forward pass and attends to the KV cache. They apply to models that
decode token by token through :mod:`bench.models.ar_decoding`, need the cache on, and exclude
each other (one decoding loop at a time).
"""

from __future__ import annotations

from typing import ClassVar

from strategies.base import Strategy


class DecodingStrategy(Strategy):
    """A strategy that decodes with its own loop; subclasses say in words what they need.

    Attributes:
        needs: why the technique needs a model that decodes token by token (completes
            "<model> does not decode token by token: ...").
        cache_use: what the technique does with the KV cache (completes "needs the KV cache
            (...)").
    """

    stage = Strategy.STAGE_SAMPLING
    exclusive_group = "decoding"
    needs: ClassVar[str] = ""
    cache_use: ClassVar[str] = ""

    def supports(self, model) -> str | None:
        if model.kind != "autoregressive":
            return f"{model.name} ({model.kind}) does not decode token by token: {self.needs}"
        reason = model.decoding_reason()
        if reason:
            return reason
        if model.call_args.get("use_cache") is False:
            return f"{self.name} needs the KV cache ({self.cache_use})"
        return self.supports_decoding(model) or super().supports(model)

    def supports_decoding(self, model) -> str | None:
        """Further checks on a model that decodes token by token with its cache; None: fine."""
        return None

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.name == "no-kv-cache":
            return f"{self.name} needs the KV cache ({self.cache_use})"
        return None
