"""A randomly initialised digits-ar of the real layout, small enough to decode in milliseconds,
and decoding sessions on small token grids for the decoding algorithms' tests."""

from __future__ import annotations

import torch

from bench.models import ar_decoding
from bench.models.digits import ar as digits_ar
from bench.models.digits.ar import DigitsAR, DigitsNetwork, build_lm

#: The tiny architecture (the shipped model is 8 x 256).
TINY = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}
#: A tiny draft (one layer, narrower) for speculative decoding tests.
TINY_DRAFT = {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}


def tiny_model(seed: int = 0) -> DigitsAR:
    """A digits-ar with random weights of the :data:`TINY` size (default call arguments:
    sampled decoding, as the shipped model)."""
    return DigitsAR(
        name="digits-ar",
        kind="autoregressive",
        device=torch.device("cpu"),
        call_args=dict(digits_ar.DEFAULT_CALL_ARGS),
        lm=build_lm(TINY, seed=seed).eval(),
    )


def tiny_draft(seed: int = 7) -> torch.nn.Module:
    """A poor random draft for :func:`tiny_model` (same vocabulary)."""
    return build_lm(TINY_DRAFT, seed=seed).eval()


def tiny_session(
    grid: tuple[int, int] = (3, 3),
    batch: int = 2,
    do_sample: bool = False,
    seed: int = 0,
    draft: bool = False,
    temperature: float = 1.0,
    network_seed: int = 0,
) -> ar_decoding.DecodingSession:
    """A decoding session of the tiny digits network on a small token grid (prompts cycle
    over the digits; image ``i`` uses seed ``seed + i``)."""
    lm = build_lm(TINY, seed=network_seed).eval()
    prompt = (torch.arange(batch) % 10 + digits_ar.PROMPT_TOKEN_OFFSET)[:, None]
    return ar_decoding.DecodingSession(
        prompt,
        [seed + i for i in range(batch)],
        grid,
        DigitsNetwork(lm),
        ar_decoding.Sampling(do_sample=do_sample, temperature=temperature),
        draft=DigitsNetwork(tiny_draft()) if draft else None,
    )


class RecordingNetwork(ar_decoding.TokenNetwork):
    """Wraps a network and records every forward pass's query positions, attention mask and logits."""

    def __init__(self, net: ar_decoding.TokenNetwork) -> None:
        self.net, self.module, self.vocab = net, net.module, net.vocab
        self.calls: list[dict] = []

    def forward(self, tokens, positions, mask, cache, prompt=False):
        logits = self.net.forward(tokens, positions, mask, cache, prompt=prompt)
        self.calls.append({"positions": positions.clone(), "logits": logits.detach().clone(),
                           "mask": None if mask is None else mask.clone(), "prompt": prompt})
        return logits
