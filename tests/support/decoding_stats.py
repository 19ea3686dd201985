"""Check that a decoding algorithm samples from the model's own distribution: decode a short
sequence for thousands of images at once and compare the token frequencies with the exact
marginals, enumerated from the network itself (an independent reference)."""

from __future__ import annotations

import torch

from bench.models import ar_decoding
from bench.models.digits import ar as digits_ar
from bench.models.digits.ar import DigitsNetwork, build_lm
from tests.support.tiny_ar import TINY, tiny_draft

#: Tokens decoded per image in the check (a 1 x 3 grid).
LENGTH = 3


def sampled_session(n: int, temperature: float, draft: bool = False, seed: int = 0):
    """``n`` images of one prompt on a 1 x 3 grid, sampled at ``temperature``."""
    lm = build_lm(TINY, seed=3).eval()
    prompt = torch.full((n, 1), digits_ar.PROMPT_TOKEN_OFFSET + 4)
    return ar_decoding.DecodingSession(
        prompt, [seed + i for i in range(n)], (1, LENGTH), DigitsNetwork(lm),
        ar_decoding.Sampling(do_sample=True, temperature=temperature),
        draft=DigitsNetwork(tiny_draft()) if draft else None,
    ), lm


@torch.no_grad()
def exact_marginals(lm: torch.nn.Module, temperature: float) -> list[torch.Tensor]:
    """The exact marginal distribution of each of the :data:`LENGTH` tokens."""
    v = digits_ar.NUM_LEVELS
    prompt = digits_ar.PROMPT_TOKEN_OFFSET + 4
    joint = {(): torch.ones(())}
    marginals = []
    for step in range(LENGTH):
        prefixes = list(joint)
        ids = torch.tensor([[prompt, *p] for p in prefixes])
        probs = torch.softmax(lm(input_ids=ids).logits[:, -1, :v].double() / temperature, -1)
        nxt = {}
        marginal = torch.zeros(v, dtype=torch.float64)
        for prefix, p in zip(prefixes, probs, strict=True):
            weight = joint[prefix]
            marginal += weight * p
            if step + 1 < LENGTH:
                for t in range(v):
                    nxt[(*prefix, t)] = weight * p[t]
        marginals.append(marginal)
        joint = nxt
    return marginals


def total_variation(tokens: torch.Tensor, marginals: list[torch.Tensor]) -> list[float]:
    """Total-variation distance between each position's token frequencies and its marginal."""
    out = []
    for i, exact in enumerate(marginals):
        freq = torch.bincount(tokens[:, i], minlength=len(exact)).double() / len(tokens)
        out.append(float(0.5 * (freq - exact).abs().sum()))
    return out


__all__ = ["LENGTH", "exact_marginals", "sampled_session", "total_variation"]
