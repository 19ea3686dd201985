"""The decoding loop of the autoregressive image-token models (``digits-ar``, ``arch:janus``,
``arch:emu3``): KV cache, batching, sampling, and the hook through which decoding algorithms
(``zipar``, ``sjd``, ``speculative``) replace plain token-by-token decoding.

One generation call builds a :class:`DecodingSession` for its images and hands it to a
*decoder*: :func:`decode_autoregressive` (one token per image per forward pass, the baseline)
or whatever a strategy installed with ``model.set_decoder(...)``. The session offers what
every decoding algorithm needs and nothing model-specific:

* :class:`Stream`: a network (the target, or the draft of speculative decoding) with its KV
  cache (transformers' ``DynamicCache``) and, for every cached entry, its sequence position
  and whether other queries may see it. :meth:`Stream.run` appends a block of query tokens
  per image and builds the attention mask that keeps each query's context to the *visible*
  entries at positions up to its own (plus itself), so several tokens of one image, rows of
  different lengths, rejected drafts and auxiliary queries all share one batched forward
  pass. When the context is plain causal it passes no mask at all, exactly as
  ``generate`` does.
* sampling: greedy (``do_sample=False``: argmax) or sampled with ``temperature`` and
  ``top_k``; every image draws its randomness from its own ``torch.Generator`` seeded with
  its seed, and draws only what its own decoding needs, so an image never depends on the
  others of its batch (up to floating-point summation order).
* :meth:`DecodingSession.verify`: the speculative-sampling acceptance rule (Leviathan et al.,
  2023; Chen et al., 2023) shared by speculative and speculative Jacobi decoding: a draft token
  ``x`` proposed from ``q`` is kept with probability ``min(1, p(x) / q(x))``; at the first
  rejection a token is drawn from ``max(0, p - q)`` renormalised, so the output follows the
  target's distribution ``p``. Under greedy decoding a draft is kept exactly when it is the
  target's argmax, so the output is the target's greedy output.
* image-token indices: decoders work with the model's image-token indices ``0..V-1`` (pixel
  levels, VQ codebook entries...); the model's network maps them to its own inputs and
  returns logits over them, so prompt and other non-image tokens can never be generated.

The counts each call adds to ``model.notes["decoding"]`` are described in
:mod:`bench.models.ar_stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from bench.core.errors import ModelError
from bench.models.ar_networks import GuidedNetwork, Stream, TokenNetwork, cache_keyword, crop_cache
from bench.models.ar_stats import ITERATION_SLOTS, DecodingStats, add_stats, merge_stats
from bench.models.base import StepCallback


# -- sampling settings -------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """How a token is chosen from a distribution.

    Attributes:
        do_sample: sample (True) or take the most likely token (False, greedy).
        temperature: divides the logits before the softmax (sampled decoding only).
        top_k: keep only the ``top_k`` most likely tokens (0: all).
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ModelError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ModelError(f"top_k must be >= 0 (0: no top-k filtering), got {self.top_k}")


# -- per-image randomness --------------------------------------------------------------------
class RowRandom:
    """Uniform draws in [0, 1), one independent stream per image, seeded with its seed.

    Draws come from a buffer refilled from the image's own generator, so what an image
    draws depends only on its seed and on how many draws it made before.
    """

    def __init__(self, seeds: Sequence[int], chunk: int = 256) -> None:
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.chunk = chunk
        self.buffer = torch.stack(
            [torch.rand(chunk, generator=g, dtype=torch.float64) for g in self.gens]
        ) if self.gens else torch.empty(0, chunk, dtype=torch.float64)
        self.cursor = torch.zeros(len(self.gens), dtype=torch.long)

    def uniform(self, rows: torch.Tensor) -> torch.Tensor:
        """One draw for each image index in ``rows`` (a 1-D long tensor), in float64."""
        rows = rows.cpu()
        full = rows[self.cursor[rows] >= self.chunk]
        for r in full.tolist():
            self.buffer[r] = torch.rand(self.chunk, generator=self.gens[r], dtype=torch.float64)
            self.cursor[r] = 0
        out = self.buffer[rows, self.cursor[rows]]
        self.cursor[rows] += 1
        return out


# -- the session -------------------------------------------------------------------------------
class Decoder(Protocol):
    """A decoding algorithm: fills ``session.out`` for every image of the session.

    Attributes:
        name: recorded as ``notes["decoding"]["decoder"]``.
        needs_draft: whether the session must carry a draft stream.
        needs_cache: whether it needs the KV cache (all but plain decoding do).
    """

    name: str
    needs_draft: bool
    needs_cache: bool

    def __call__(self, session: DecodingSession) -> None: ...

    def describe(self) -> dict[str, Any]:
        """The decoder's settings, recorded with results (``model.describe()["decoder"]``)."""
        ...


class DecodingSession:
    """Everything a decoder needs for one generation call.

    Attributes:
        batch: images decoded together.
        grid: (rows, cols) of image tokens, in raster order.
        tokens_per_image: ``rows * cols``.
        prompt: prompt tokens ``(B, P)``; image token ``i`` sits at position ``P + i``.
        sampling: greedy or sampled settings.
        target: the stream of the model's network.
        draft: the stream of the draft network (speculative decoding), or None.
        out: the image-token indices ``(B, tokens_per_image)`` decoded so far (-1: not yet).
        stats: this call's counts (decoders add theirs).
        options: the generation call's extra arguments, for decoders that read settings.
    """

    def __init__(
        self,
        prompt: torch.Tensor,
        seeds: Sequence[int],
        grid: tuple[int, int],
        target: TokenNetwork,
        sampling: Sampling,
        draft: TokenNetwork | None = None,
        step_callback: StepCallback | None = None,
        use_cache: bool = True,
        constrain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.device = prompt.device
        self.prompt = prompt
        self.batch = int(prompt.shape[0])
        if len(seeds) != self.batch:
            raise ValueError(f"{self.batch} prompts but {len(seeds)} seeds")
        self.grid = (int(grid[0]), int(grid[1]))
        self.tokens_per_image = self.grid[0] * self.grid[1]
        self.prompt_len = int(prompt.shape[1])
        self.sampling = sampling
        self.use_cache = use_cache
        self.target = Stream(target, self.batch, self.device, use_cache)
        self.draft = Stream(draft, self.batch, self.device) if draft is not None else None
        self.vocab = target.vocab
        self.out = torch.full((self.batch, self.tokens_per_image), -1, dtype=torch.long,
                              device=self.device)
        self.random = RowRandom(seeds)
        self.stats = DecodingStats(images=self.batch, uses_draft=draft is not None)
        self.options = dict(options or {})
        self._callback = step_callback
        self._constrain = constrain
        self._steps = 0
        self.all_rows = torch.arange(self.batch, device=self.device)

    # -- bookkeeping ---------------------------------------------------------------------
    def position(self, index: torch.Tensor | int) -> torch.Tensor | int:
        """The sequence position of image token ``index``."""
        return self.prompt_len + index

    def step(self, active: int | None = None) -> None:
        """Record one target forward pass that advanced ``active`` images (default: all),
        and fire the step callback."""
        self.stats.forward_passes += 1
        self.stats.image_forward_passes += self.batch if active is None else int(active)
        if self._callback is not None:
            self._callback(self._steps)
        self._steps += 1

    def draft_step(self) -> None:
        """Record one draft forward pass."""
        self.stats.draft_forward_passes += 1

    # -- distributions and choices --------------------------------------------------------
    def constrain(self, logits: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The logits with the model's layout constraints applied (tokens a position may not
        hold set to -inf); ``index`` holds the image-token index each logit predicts."""
        if self._constrain is None or index is None:
            return logits
        return self._constrain(logits, index)

    def distribution(self, logits: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The probabilities (float64, last dimension) decoding draws from: temperature and
        top-k applied for sampled decoding, a one-hot of the argmax for greedy decoding."""
        logits = self.constrain(logits.float(), index)
        if not self.sampling.do_sample:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
        x = logits.double() / self.sampling.temperature
        k = self.sampling.top_k
        if 0 < k < x.shape[-1]:
            kth = torch.topk(x, k, dim=-1).values[..., -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        return torch.softmax(x, dim=-1)

    def restrict(self, probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``probs`` ``(n, V)`` limited to the tokens image-token ``index`` ``(n,)`` may hold
        (the model's layout constraints) and renormalised; a row left with no mass becomes
        uniform over the allowed tokens. Used to propose a guess for one position from a
        distribution predicted for another."""
        if self._constrain is None:
            return probs
        allowed = torch.isfinite(self.constrain(torch.zeros(probs.shape, device=probs.device),
                                                index))
        out = probs * allowed
        total = out.sum(-1, keepdim=True)
        uniform = allowed.double() / allowed.sum(-1, keepdim=True).clamp_min(1)
        return torch.where(total > 0, out / total.clamp_min(1e-300), uniform)

    def sample(self, probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One token per row of ``probs`` ``(n, V)``, drawn with the randomness of images
        ``rows`` ``(n,)`` (inverse-CDF sampling)."""
        if not self.sampling.do_sample:
            return probs.argmax(-1)
        u = self.random.uniform(rows).to(probs.device)
        cdf = probs.cumsum(-1)
        token = (cdf <= (u * cdf[:, -1])[:, None]).sum(-1)
        return token.clamp(max=probs.shape[-1] - 1)

    def choose(self, logits: torch.Tensor, rows: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """Pick the next token of images ``rows`` (default: all) from ``logits`` ``(n, V)``."""
        rows = self.all_rows if rows is None else rows
        if not self.sampling.do_sample:
            return self.constrain(logits.float(), index).argmax(-1)
        return self.sample(self.distribution(logits, index), rows)

    def verify(
        self,
        drafts: torch.Tensor,
        proposal: torch.Tensor | None,
        target_probs: torch.Tensor,
        counts: torch.Tensor,
        rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The speculative-sampling acceptance rule, row by row.

        Args:
            drafts: draft tokens ``(n, K)``.
            proposal: the distributions they were drawn from ``(n, K, V)``; needed for
                sampled decoding only (greedy drafts are one-hot).
            target_probs: the target's distributions ``(n, K + 1, V)`` at the drafts'
                positions and one past them (from :meth:`distribution`).
            counts: drafts each row offers ``(n,)`` (the rest of its K are padding).
            rows: the images these rows belong to (their randomness is used).

        Returns:
            (accepted ``(n,)``, next token ``(n,)``): how many leading drafts are kept, and
            the token that follows them: drawn from ``max(0, p - q)`` at the first
            rejection, or from ``p`` one past the last draft when all were kept.
        """
        n, k = drafts.shape
        accepted = torch.zeros(n, dtype=torch.long, device=drafts.device)
        alive = torch.ones(n, dtype=torch.bool, device=drafts.device)
        for j in range(k):
            check = alive & (counts > j)
            if not bool(check.any()):
                break
            idx = check.nonzero().squeeze(1)
            d = drafts[idx, j]
            p = target_probs[idx, j].gather(1, d[:, None]).squeeze(1)
            if self.sampling.do_sample:
                if proposal is None:
                    raise ValueError("sampled verification needs the drafts' distributions")
                q = proposal[idx, j].gather(1, d[:, None]).squeeze(1)
                u = self.random.uniform(rows[idx]).to(p.device)
                ok = u < torch.clamp(p / q.clamp_min(1e-300), max=1.0)
            else:
                ok = p > 0.5  # one-hot target: the draft is its argmax
            accepted[idx[ok]] += 1
            alive[idx[~ok]] = False
        # The next token: residual at the first rejection, else one past the last draft.
        at = accepted.clamp(max=k)
        p_next = target_probs[torch.arange(n, device=drafts.device), at]
        rejected = accepted < counts
        if self.sampling.do_sample and proposal is not None and bool(rejected.any()):
            ridx = rejected.nonzero().squeeze(1)
            q_at = proposal[ridx, at[ridx]]
            residual = (p_next[ridx] - q_at).clamp_min(0)
            total = residual.sum(-1, keepdim=True)
            residual = torch.where(total > 0, residual / total.clamp_min(1e-300), p_next[ridx])
            p_next = p_next.clone()
            p_next[ridx] = residual
        nxt = self.sample(p_next, rows)
        return accepted, nxt


# -- the baseline decoder ----------------------------------------------------------------------
class Autoregressive:
    """Plain decoding: one token per image per forward pass, in raster order."""

    name = "autoregressive"
    needs_draft = False
    needs_cache = False

    def __call__(self, session: DecodingSession) -> None:
        decode_autoregressive(session)

    def describe(self) -> dict[str, Any]:
        """Settings recorded with results."""
        return {"decoder": self.name}


def decode_autoregressive(session: DecodingSession) -> None:
    """Fill ``session.out`` one token per forward pass (the KV cache on unless the session
    was built with ``use_cache=False``, which recomputes the whole sequence every step)."""
    n = session.tokens_per_image
    target = session.target
    if session.use_cache:
        logits = target.prefill(session.prompt)
    else:
        logits = target.run_uncached(session.prompt, session.out[:, :0])
    session.step()
    for i in range(n):
        index = torch.full((session.batch,), i, device=session.device)
        tok = session.choose(logits, index=index)
        session.out[:, i] = tok
        if i == n - 1:
            break
        if session.use_cache:
            positions = torch.full((session.batch, 1), session.prompt_len + i, device=session.device)
            keep = torch.ones(session.batch, 1, dtype=torch.bool, device=session.device)
            logits = target.run(tok[:, None], positions, keep)[:, 0]
        else:
            logits = target.run_uncached(session.prompt, session.out[:, : i + 1])
        session.step()
    session.stats.tokens += session.batch * n


AUTOREGRESSIVE = Autoregressive()


def check_call_args(args: dict[str, Any], known: set[str] | frozenset[str], name: str) -> None:
    """Refuse generation arguments a model does not know, naming the known ones."""
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ModelError(
            f"unknown generation argument(s) {unknown} for {name}; known: {sorted(known)}"
        )


def sampling_from(args: dict[str, Any]) -> Sampling:
    """The :class:`Sampling` of a generation call's arguments."""
    return Sampling(
        do_sample=bool(args.get("do_sample", False)),
        temperature=float(args.get("temperature", 1.0)),
        top_k=int(args.get("top_k", 0) or 0),
    )


def run_decoder(
    decoder: Decoder,
    prompt: torch.Tensor,
    seeds: Sequence[int],
    grid: tuple[int, int],
    target: TokenNetwork,
    args: dict[str, Any],
    draft: TokenNetwork | None = None,
    step_callback: StepCallback | None = None,
    constrain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batched: bool = True,
) -> tuple[torch.Tensor, DecodingStats]:
    """Decode one generation call with ``decoder``: all images in one session (``batched``)
    or one session per image. Returns the image-token indices ``(B, tokens)`` and the counts.
    """
    use_cache = bool(args.get("use_cache", True))
    if decoder.needs_cache and not use_cache:
        raise ModelError(f"{decoder.name} decoding needs the KV cache (use_cache=True)")
    if decoder.needs_draft and draft is None:
        raise ModelError(f"{decoder.name} decoding needs a draft model; none is attached")
    sampling = sampling_from(args)
    total = DecodingStats(decoder=decoder.name, uses_draft=decoder.needs_draft)
    outs = []
    groups = [list(range(len(seeds)))] if batched else [[i] for i in range(len(seeds))]
    step = _Counter(step_callback)
    for group in groups:
        session = DecodingSession(
            prompt[group], [seeds[i] for i in group], grid, target, sampling,
            draft=draft if decoder.needs_draft else None,
            step_callback=step if step_callback is not None else None,
            use_cache=use_cache, constrain=constrain, options=args,
        )
        with torch.no_grad():
            decoder(session)
        if bool((session.out < 0).any()):
            raise RuntimeError(f"{decoder.name} decoding left tokens undecided")
        outs.append(session.out)
        add_stats(total, session.stats)
    total.decoder = decoder.name
    return torch.cat(outs), total


class _Counter:
    """One step index across the sessions of a call."""

    def __init__(self, callback: StepCallback | None) -> None:
        self.callback, self.n = callback, 0

    def __call__(self, _: int) -> None:
        if self.callback is not None:
            self.callback(self.n)
        self.n += 1


__all__ = [
    "AUTOREGRESSIVE",
    "ITERATION_SLOTS",
    "Autoregressive",
    "Decoder",
    "DecodingSession",
    "DecodingStats",
    "GuidedNetwork",
    "RowRandom",
    "Sampling",
    "Stream",
    "TokenNetwork",
    "cache_keyword",
    "check_call_args",
    "crop_cache",
    "decode_autoregressive",
    "merge_stats",
    "run_decoder",
    "sampling_from",
]
