"""What every image-token model shares (``digits-ar``, ``arch:janus``, ``arch:emu3``): a network
(role ``denoiser``) with an optional draft (role ``draft``), decoded by our own loop
(:mod:`bench.models.ar_decoding`) with whatever decoder a strategy installed, its counts
summed in ``notes["decoding"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.models import ar_decoding
from bench.models.base import ReferenceModel, StepCallback, TokenModel


@dataclass
class TokenImageModel(TokenModel, ReferenceModel):
    """A :class:`~bench.models.base.ReferenceModel` that writes images as tokens.

    Attributes (besides :class:`~bench.models.base.ReferenceModel`'s):
        assistant: the draft model of speculative decoding (role ``draft``), or None.
        decoder: the decoding algorithm a strategy installed (None: plain autoregressive).
    """

    assistant: Any = field(default=None, repr=False)
    decoder: Any = field(default=None, repr=False)

    #: The attribute holding the network run at every step (role ``denoiser``).
    network_attr: ClassVar[str] = "network_module"
    #: The generation arguments the model takes.
    call_arg_names: ClassVar[frozenset[str]] = frozenset()

    @property
    def network(self) -> torch.nn.Module:
        """The network run at every decoding step (role ``denoiser``)."""
        return getattr(self, self.network_attr)

    # -- generation -------------------------------------------------------------------
    def call_settings(
        self, prompts: Sequence[str], seeds: Sequence[int], call_args: dict[str, Any]
    ) -> dict[str, Any]:
        """The settings of one generation call (defaults, then ``call_args``), checked."""
        if len(prompts) != len(seeds):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        args = {**self.call_args, **call_args}
        ar_decoding.check_call_args(args, self.call_arg_names, self.name)
        return args

    def decode(
        self,
        prompt: torch.Tensor,
        seeds: Sequence[int],
        args: dict[str, Any],
        wrap: Callable[[torch.nn.Module], ar_decoding.TokenNetwork],
        step_callback: StepCallback | None = None,
        constrain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Image-token indices ``(B, tokens_per_image)`` decoded after ``prompt`` by the
        installed decoder; ``wrap`` turns the network (and the draft) into what the loop
        runs. The call's counts are added to ``notes["decoding"]``."""
        decoder = self.decoder if self.decoder is not None else ar_decoding.AUTOREGRESSIVE
        tokens, stats = ar_decoding.run_decoder(
            decoder, prompt, list(seeds), self.token_grid, wrap(self.network), args,
            draft=wrap(self.assistant) if self.assistant is not None else None,
            step_callback=step_callback, constrain=constrain,
            batched=bool(args.get("batched", True)),
        )
        ar_decoding.merge_stats(self.notes.setdefault("decoding", {}), stats)
        return tokens

    def clone(self, share_weights: bool = False) -> TokenImageModel:
        """A copy (see :meth:`ReferenceModel.clone`) whose decoding counts start from zero."""
        twin = super().clone(share_weights)
        twin.notes.pop("decoding", None)
        return twin  # type: ignore[return-value]

    # -- the token protocol ------------------------------------------------------------
    def set_decoder(self, decoder: Any) -> None:
        """Decode with ``decoder`` (None: plain autoregressive decoding)."""
        self.decoder = decoder
        self.notes.pop("decoding", None)

    # -- what strategies may change ----------------------------------------------------
    def components(self) -> dict[str, torch.nn.Module]:
        """``denoiser``: the network; ``draft``: the draft model, once one is attached."""
        out = {"denoiser": self.network}
        if self.assistant is not None:
            out["draft"] = self.assistant
        return out

    def set_component(self, role: str, module: torch.nn.Module | None) -> None:
        if role == "denoiser":
            if module is None:
                raise ValueError("the denoiser cannot be removed")
            setattr(self, self.network_attr, module)
        elif role == "draft":
            self.assistant = module
        else:
            raise KeyError(f"{self.name} has no component {role!r}; it has ['denoiser', 'draft']")
        self.notes.pop("decoding", None)  # counts of the old modules no longer apply

    def describe(self) -> dict[str, Any]:
        """The base summary plus ``tokens_per_image`` (for tokens/s), the decoder and the
        draft's size."""
        out = super().describe()
        out["tokens_per_image"] = self.tokens_per_image
        decoder = self.decoder if self.decoder is not None else ar_decoding.AUTOREGRESSIVE
        out["decoder"] = decoder.describe() if hasattr(decoder, "describe") else decoder.name
        if self.assistant is not None:
            out["draft_params"] = sum(p.numel() for p in self.assistant.parameters())
        return out


__all__ = ["TokenImageModel"]
