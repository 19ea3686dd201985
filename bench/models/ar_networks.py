"""The networks of the image-token decoding loop (:mod:`bench.models.ar_decoding`) and their
KV-cache streams: a :class:`TokenNetwork` is one network (the target or a draft) as the loop
runs it, a :class:`Stream` a network decoding a batch with its cache and what each cached entry
is (its position, and whether other queries may see it)."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import torch


# -- networks --------------------------------------------------------------------------------
class TokenNetwork(ABC):
    """One network of an image-token model (the target or a draft) as the loop runs it.

    Attributes:
        module: the ``nn.Module`` (its parameters' dtype decides the mask's dtype).
        vocab: number of image-token indices its logits cover.
    """

    module: torch.nn.Module
    vocab: int

    @abstractmethod
    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
        prompt: bool = False,
    ) -> torch.Tensor:
        """Logits ``(B, q, vocab)`` (float32) for query tokens ``(B, q)`` at sequence
        ``positions`` ``(B, q)``, appending their keys and values to ``cache`` (None:
        no cache, the queries are the whole sequence). ``mask`` is an additive 4-D mask
        ``(B, 1, q, cached + q)`` or None for plain causal attention. With ``prompt=True``
        the tokens are prompt tokens (the model's own prompt vocabulary), else image-token
        indices."""

    def new_cache(self) -> Any:
        """An empty KV cache for this network."""
        from transformers import DynamicCache  # lazy: transformers is slow to import

        return DynamicCache()

    def forward_sequence(self, prompt: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The logits ``(B, vocab)`` after the prompt ``(B, P)`` and image tokens ``(B, n)``,
        computed from scratch (the uncached reference: nothing is kept between calls)."""
        b, p = prompt.shape
        cache = self.new_cache()
        pos = torch.arange(p, device=prompt.device).expand(b, p)
        logits = self.forward(prompt, pos, None, cache, prompt=True)
        if tokens.shape[1]:
            pos = torch.arange(p, p + tokens.shape[1], device=prompt.device).expand(b, -1)
            logits = self.forward(tokens, pos, None, cache)
        return logits[:, -1]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the network's floating-point parameters."""
        for p in self.module.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32


def cache_keyword(module: torch.nn.Module) -> str:
    """The keyword under which ``module.forward`` takes its KV cache (``cache`` in recent
    transformers, ``past_key_values`` before)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def crop_cache(cache: Any, length: int) -> None:
    """Keep the first ``length`` entries of every layer of a transformers cache."""
    for layer in getattr(cache, "layers", []):
        keys = getattr(layer, "keys", None)
        if keys is not None and keys.numel() and keys.shape[-2] > length:
            layer.keys = keys[..., :length, :]
            layer.values = layer.values[..., :length, :]


class GuidedNetwork(TokenNetwork):
    """Classifier-free guidance around a network: every forward pass runs the conditional
    and the unconditional prompt in one doubled batch and returns
    ``uncond + scale * (cond - uncond)`` (as Janus and Emu3 generate images).

    Args:
        base: the network.
        scale: the guidance scale (> 1).
        uncond_prompt: the unconditional prompt tokens ``(B, P)`` (same shape as the prompt).
    """

    def __init__(self, base: TokenNetwork, scale: float, uncond_prompt: torch.Tensor) -> None:
        self.base, self.scale, self.uncond_prompt = base, float(scale), uncond_prompt
        self.module, self.vocab = base.module, base.vocab

    def new_cache(self) -> Any:
        return self.base.new_cache()

    def forward(self, tokens, positions, mask, cache, prompt=False):
        other = self.uncond_prompt if prompt else tokens
        both = torch.cat([tokens, other.to(tokens.device)])
        logits = self.base.forward(
            both,
            torch.cat([positions, positions]),
            None if mask is None else torch.cat([mask, mask]),
            cache,
            prompt=prompt,
        )
        cond, uncond = logits.chunk(2)
        return uncond + self.scale * (cond - uncond)


# -- streams: a network, its KV cache and what each cached entry is -------------------------
class Stream:
    """A network decoding a batch, with its KV cache and per-entry bookkeeping.

    Every cached entry has a sequence position and a visibility flag per image. A query at
    position ``p`` attends to the visible entries at positions ``<= p`` and to itself.
    Entries of rejected drafts or auxiliary queries are made invisible (and dropped from
    the end of the cache when no image needs them).

    Attributes:
        forwards: forward passes run so far.
    """

    def __init__(self, net: TokenNetwork, batch: int, device: torch.device, use_cache: bool = True):
        self.net = net
        self.batch = batch
        self.device = device
        self.use_cache = use_cache
        self.cache = net.new_cache() if use_cache else None
        self.pos = torch.empty(batch, 0, dtype=torch.long, device=device)
        self.visible = torch.empty(batch, 0, dtype=torch.bool, device=device)
        self.forwards = 0
        self._plain = True  # every entry visible and positions increasing along the cache
        self._last = 0  # index of the first entry of the latest block

    @property
    def length(self) -> int:
        """Entries in the cache."""
        return int(self.pos.shape[1])

    def prefill(self, prompt: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Run the prompt ``(B, P)`` at positions ``start..start+P-1``; the logits ``(B, V)``
        of its last position (the distribution of the first image token)."""
        b, p = prompt.shape
        positions = torch.arange(start, start + p, device=self.device).expand(b, p)
        keep = torch.ones(b, p, dtype=torch.bool, device=self.device)
        return self.run(prompt, positions, keep, prompt=True)[:, -1]

    def run(
        self, tokens: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor, prompt: bool = False
    ) -> torch.Tensor:
        """Append query ``tokens`` ``(B, q)`` at ``positions`` and return their logits
        ``(B, q, V)``. ``keep`` ``(B, q)``: whether each query is a real token that later
        queries (and the other queries of this block at later positions) may see; a query
        with ``keep=False`` (padding, an auxiliary query) sees the context but no one sees it.
        """
        if not self.use_cache:
            raise RuntimeError("this stream has no KV cache; use run_uncached")
        tokens = tokens.to(self.device)
        positions = positions.to(self.device)
        keep = keep.to(self.device)
        b, q = tokens.shape
        old = self.length
        all_pos = torch.cat([self.pos, positions], dim=1)
        all_vis = torch.cat([self.visible, keep], dim=1)
        plain = (
            self._plain
            and bool(keep.all())
            and (old == 0 or bool((positions[:, 0] > self.pos[:, -1]).all()))
            and (q == 1 or bool((positions[:, 1:] > positions[:, :-1]).all()))
        )
        mask = None if plain else self._mask(all_pos, all_vis, positions, old)
        logits = self.net.forward(tokens, positions, mask, self.cache, prompt=prompt)
        self.pos, self.visible, self._plain, self._last = all_pos, all_vis, plain, old
        self.forwards += 1
        return logits

    def _mask(self, all_pos, all_vis, positions, old) -> torch.Tensor:
        b, q = positions.shape
        allowed = all_vis[:, None, :] & (all_pos[:, None, :] <= positions[:, :, None])
        own = torch.arange(q, device=self.device)
        allowed[:, own, old + own] = True
        dtype = self.net.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask.unsqueeze(1)

    def forget(self, drop: torch.Tensor) -> None:
        """Make entries of the latest block invisible: ``drop`` ``(B, q)`` over that block
        (True: drop). Trailing entries no image can see are removed from the cache."""
        self.hide(self._last, drop)

    def hide(self, start: int, drop: torch.Tensor) -> None:
        """Make the entries ``start .. start + w - 1`` invisible where ``drop`` ``(B, w)`` is
        True; trailing entries no image can see are removed from the cache."""
        drop = drop.to(self.device)
        if not bool(drop.any()):
            return
        if start < 0 or start + drop.shape[1] > self.length:
            raise IndexError(f"entries {start}..{start + drop.shape[1] - 1} are not in the cache")
        self.visible[:, start : start + drop.shape[1]] &= ~drop
        self._plain = False
        self._trim()

    def _trim(self) -> None:
        used = self.visible.any(dim=0).nonzero()
        keep = int(used.max()) + 1 if len(used) else 0
        if keep < self.length:
            crop_cache(self.cache, keep)
            self.pos = self.pos[:, :keep]
            self.visible = self.visible[:, :keep]
            self._last = min(self._last, keep)
        if bool(self.visible.all()) and (
            self.length < 2 or bool((self.pos[:, 1:] > self.pos[:, :-1]).all())
        ):
            self._plain = True

    def run_uncached(self, prompt: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Without a KV cache: run the prompt and the image ``tokens`` ``(B, n)`` decoded so
        far as one sequence and return the logits ``(B, V)`` of its last position."""
        self.forwards += 1
        return self.net.forward_sequence(prompt, tokens)


__all__ = ["GuidedNetwork", "Stream", "TokenNetwork", "cache_keyword", "crop_cache"]
