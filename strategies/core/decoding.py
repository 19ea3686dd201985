"""What the strategies that replace an autoregressive model's decoding loop share.

``zipar``, ``sjd`` and ``speculative`` each install a decoder (``model.set_decoder``) that
feeds several tokens per forward pass and attends to the KV cache. They apply to models that
decode token by token through :mod:`bench.models.ar_decoding`, need the cache on, and exclude
each other (one decoding loop at a time).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from bench.models.base import has_tokens
from strategies.core.base import Strategy


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
        if not has_tokens(model):
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


def accept_and_commit(
    s: Any,
    proposals: torch.Tensor,
    proposal_probs: torch.Tensor | None,
    probs: torch.Tensor,
    counts: torch.Tensor,
    rows: Any,
    done: torch.Tensor,
    active: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify one round of ``proposals`` (``(B, K)`` tokens for the positions from ``done``)
    against the target's ``probs`` with the session's rule (``s.verify``), count them in
    ``s.stats``, and write the accepted tokens and the one after them into ``s.out``.

    ``s`` is the decoding session (:class:`bench.models.ar_decoding.DecodingSession`);
    ``counts`` says how many proposals each image made, ``active`` which images are still
    decoding. Returns the number accepted per image (0 for finished ones) and the position
    after them, where the verified next token was written.
    """
    accepted, nxt = s.verify(proposals, proposal_probs, probs, counts, rows)
    accepted = torch.where(active, accepted, torch.zeros_like(accepted))
    s.stats.draft_proposed += int(counts.sum())
    s.stats.draft_accepted += int(accepted.sum())
    s.stats.draft_checked += int(torch.minimum(accepted + 1, counts).sum())
    for j in range(proposals.shape[1]):
        take = active & (accepted > j)
        if bool(take.any()):
            idx = take.nonzero().squeeze(1)
            s.out[idx, done[idx] + j] = proposals[idx, j]
    pos_next = done + accepted
    room = active & (pos_next < s.tokens_per_image)
    if bool(room.any()):
        idx = room.nonzero().squeeze(1)
        s.out[idx, pos_next[idx]] = nxt[idx]
    return accepted, pos_next
