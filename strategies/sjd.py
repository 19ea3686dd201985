"""Speculative Jacobi decoding (SJD): decode a block of guessed tokens in parallel, keep what the
model agrees with, under a rule that leaves the sampling distribution unchanged.

Jacobi decoding treats the next ``block`` tokens of an image as unknowns, guesses them all,
and runs the model once on [last decided token, guesses...]: one forward pass scores every
guess given the guesses before it. Plain Jacobi decoding keeps the guesses equal to the
model's greedy choice; Teng et al. (2024, "Accelerating Auto-regressive Text-to-Image
Generation with Training-free Speculative Jacobi Decoding") made it work for sampled
decoding with the speculative-sampling acceptance rule: a guess ``x`` drawn from ``q`` is kept
with probability ``min(1, p(x) / q(x))`` where ``p`` is the model's distribution given the
tokens before it; at the first rejection a token is drawn from ``max(0, p - q)``
renormalised. The output then follows the model's own distribution (greedy: it is the model's
greedy output, token for token).

After each iteration the guesses that were not reached are refreshed the Jacobi way: the
guess for a position becomes a draw from this iteration's prediction at that position, and
positions never predicted yet are guessed from the furthest prediction made (a valid
proposal: any distribution fixed before the draw will do; image tokens resemble their left
neighbour). Every image keeps its own block, its own accepted length and its own randomness.

Records (``notes["decoding"]``): ``acceptance_per_iteration`` (acceptance rate of the i-th
Jacobi iteration of a call), ``acceptance_rate``, ``tokens_per_forward`` (tokens an image
gains per forward pass) and ``forward_passes_per_image``.

What it buys on a CPU (one thread, batches of 8, 200 sampled images,
``tests/benchmarks/scripts/ar_decoding.py``, timed in alternation with the baseline): on
``digits-ar`` with ``block=2`` the model kept 40% of the guesses, 1.76 tokens per pass (36.4
passes per image instead of 64), FID unchanged within the noise band (1.04 against 1.09),
adherence 0.985 (baseline 0.975), and it ran 1.10x faster (interquartile range of the
per-batch ratios 1.01-1.16); greedy output identical to the baseline's. Little, because a
pass scoring 3 tokens per image costs 1.5-1.8x a one-token pass at batch 8 on this CPU (17.6
against 9.9 ms for the target), the batch runs until its slowest image is done, and the
loop's own work adds about 8%. ``block=4``: 32% kept, 2.17 tokens per pass, 1.04x. On
``digits-ar-large`` (before the ZipAR fine-tuning of ``digits-ar``, which it did not get):
1.08x with ``block=2``. Jacobi decoding pays off where a pass's cost
hardly grows with the tokens it scores (large models on GPUs, memory-bound decoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from strategies.core.base import StrategyConfig, param
from strategies.core.decoding import DecodingStrategy, accept_and_commit


@dataclass(frozen=True)
class Config(StrategyConfig):
    """The Jacobi block.

    Attributes:
        block: guessed tokens scored per image per forward pass.
    """

    block: int = param(2, "guessed tokens scored per image per forward pass", low=1, high=256)

    always_show = ("block",)


class SJDDecoder:
    """The speculative Jacobi decoding loop (a decoder for ``model.set_decoder``).

    Args:
        block: guessed tokens per image per iteration.
    """

    name = "sjd"
    needs_draft = False
    needs_cache = True

    def __init__(self, block: int = 2) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.block = int(block)

    def describe(self) -> dict[str, Any]:
        """Settings recorded with results."""
        return {"decoder": self.name, "block": self.block}

    def __call__(self, s) -> None:
        """Decode every image of session ``s`` (a :class:`DecodingSession`)."""
        b, n, dev, k = s.batch, s.tokens_per_image, s.device, self.block
        rows = s.all_rows
        sampled = s.sampling.do_sample
        logits = s.target.prefill(s.prompt)
        s.step()
        first = s.distribution(logits, torch.zeros(b, dtype=torch.long, device=dev))
        s.out[:, 0] = s.sample(first, rows)
        done = torch.ones(b, dtype=torch.long, device=dev)
        # Guesses for positions done .. done + k - 1 and the distributions they came from.
        guess = torch.zeros(b, k, dtype=torch.long, device=dev)
        proposal = torch.zeros(b, k, s.vocab, dtype=torch.float64, device=dev) if sampled else None
        self._refill(s, guess, proposal, done, torch.zeros(b, dtype=torch.long, device=dev),
                     first[:, None], rows)
        iteration = 0
        col = torch.arange(k + 1, device=dev)[None, :]
        while bool((done < n).any()):
            active = done < n
            counts = torch.where(active, torch.clamp(n - done, max=k), torch.zeros_like(done))
            index = (done - 1)[:, None] + col  # the query's own token index
            tokens = torch.cat([s.out.gather(1, (done - 1)[:, None]), guess], dim=1)
            keep = active[:, None] & (col <= counts[:, None])
            logits = s.target.run(tokens, s.position(index.clamp(max=n - 1)), keep)
            s.step(int(active.sum()))
            probs = s.distribution(logits, (index + 1).clamp(max=n - 1))
            accepted, pos_next = accept_and_commit(
                s, guess, proposal, probs, counts, rows, done, active
            )
            s.stats.iteration(iteration, int(accepted.sum()), int(counts.sum()))
            iteration += 1
            s.target.forget(active[:, None] & (col >= 1) & (col > accepted[:, None]))
            # Jacobi refresh: predictions for positions past the new end become guesses.
            done = torch.where(active, (pos_next + 1).clamp(max=n), done)
            shift = accepted + 1  # probs[:, shift + i] predicted the new guess i's position
            self._refill(s, guess, proposal, done,
                         torch.where(active, shift, torch.zeros_like(shift)), probs, rows, active)
        s.stats.tokens += b * n

    def _refill(self, s, guess, proposal, start, shift, probs, rows, active=None) -> None:
        """New guesses for positions ``start .. start + block - 1`` of each image: guess i is
        drawn from ``probs[:, shift + i]`` while that exists, else from the last of ``probs``,
        limited to the tokens its position may hold."""
        b, k = guess.shape
        width = probs.shape[1]
        active = torch.ones(b, dtype=torch.bool, device=guess.device) if active is None else active
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            return
        n = s.tokens_per_image
        for i in range(k):
            src = (shift[idx] + i).clamp(max=width - 1)
            target = (start[idx] + i).clamp(max=n - 1)
            q = s.restrict(probs[idx, src], target)
            guess[idx, i] = s.sample(q, rows[idx])
            if proposal is not None:
                proposal[idx, i] = q


class SJD(DecodingStrategy):
    """Decode with speculative Jacobi decoding (training-free, distribution-preserving)."""

    name = "sjd"
    summary = "speculative Jacobi decoding: score a block of guessed tokens per pass (training-free)"
    Config = Config
    needs = "Jacobi decoding guesses the next tokens of an autoregressive model"
    cache_use = "it drops rejected guesses from it"

    def apply(self, model):
        model.set_decoder(SJDDecoder(self.config.block))
        model.notes[self.name] = {
            "block": self.config.block,
            "note": "each forward pass scores 1 + block tokens per image; it is faster only "
            "when tokens_per_forward exceeds the cost ratio of such a pass to a one-token pass",
        }
        return model
