"""Token merging (ToMe for Stable Diffusion, Bolya and Hoffman 2023) in the self-attention.

Before a transformer block's self-attention, ``r = ratio * N`` of its ``N`` image tokens are
merged into their most similar neighbours (bipartite soft matching); attention runs on the
``N - r`` tokens left, and afterwards every merged token gets the output of the token it was
merged into ("unmerging"), so the block's output has all ``N`` tokens again. This is the
paper's default, recommended setting: merge for self-attention only, never for
cross-attention or the MLP.

Bipartite soft matching, as in the paper: the tokens are split into destinations - one per
``sx`` x ``sy`` cell of the token grid - and sources (the rest); each source is matched to its
most cosine-similar destination, and the ``r`` best-matched sources are averaged into their
destinations. The paper picks the destination inside each cell at random; here it is always
the cell's top-left token (the paper's ``use_rand=False``), so a given input always merges
the same way and fidelity can be compared between runs.

Where: UNets only (refused on DiTs, with the measured reason). The self-attention (``attn1``)
of every diffusers ``BasicTransformerBlock`` whose token
grid is downsampled at most ``max_downsample`` times relative to the denoiser's input
(default: the finest grid that has attention, i.e. the first self-attention each call runs).
Hooked with diffusers' ``HookRegistry`` around ``attn1``, so it works for whatever
normalisation the block uses (UNet layer norm, PixArt's adaLN-single).

Why not the reference package: ``tomesd`` 0.1.3 (PyPI, last release 2023) replaces the whole
``BasicTransformerBlock.forward`` with a copy of diffusers 0.14's; on diffusers 0.42 that copy
ignores ``norm_type`` (PixArt's ``ada_norm_single`` modulation and gates are silently dropped,
so a DiT computes the wrong function), GLIGEN, positional embeddings and chunked
feed-forward; its random destination choice is also on by default.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.core.kinds import ModelKind
from strategies.core.base import Strategy, StrategyConfig, StrategyError, param

_HOOK_ROOT = "accelbench_tome_size"
_HOOK_ATTN = "accelbench_tome_attn1"


@dataclass(frozen=True)
class Config(StrategyConfig):
    """How many tokens to merge, and where."""

    ratio: float = param(0.5, "fraction of a block's tokens merged away", low=0.0, high=0.75)
    max_downsample: int | None = param(
        None,
        "merge in blocks whose token grid is at most this many times smaller than the input "
        "(None: only the finest grid with attention)",
        choices=(1, 2, 4, 8),
    )
    sx: int = param(2, "width of a destination cell in tokens", low=1, high=8)
    sy: int = param(2, "height of a destination cell in tokens", low=1, high=8)

    always_show = ("ratio",)

    def __post_init__(self) -> None:
        super().__post_init__()
        limit = 1.0 - 1.0 / (self.sx * self.sy)
        if self.ratio > limit + 1e-9:
            raise StrategyError(
                f"ratio={self.ratio} merges more tokens than there are sources: with "
                f"{self.sx}x{self.sy} cells at most {limit:.3f} of the tokens can be merged"
            )


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@functools.lru_cache(maxsize=64)
def _partition(h: int, w: int, sx: int, sy: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Token indices of the destinations (each cell's top-left) and of the sources."""
    dst = tuple(i for i in range(h * w) if (i // w) % sy == 0 and (i % w) % sx == 0)
    src = tuple(i for i in range(h * w) if (i // w) % sy or (i % w) % sx)
    return dst, src


def bipartite_soft_matching(
    metric: torch.Tensor, h: int, w: int, sx: int, sy: int, r: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """Deterministic bipartite soft matching on an ``h`` x ``w`` token grid.

    Args:
        metric: (B, N, C) token features that decide similarity (N == h * w).
        sx, sy: destination cell size; each cell's top-left token is a destination.
        r: tokens to remove by merging (clipped to the number of sources).

    Returns:
        ``(merge, unmerge)``: ``merge`` maps (B, N, C') to (B, N - r, C') by averaging each
        merged source into its destination; ``unmerge`` maps (B, N - r, C') back to (B, N, C'),
        a merged source taking its destination's value.
    """
    b, n, _ = metric.shape
    if n != h * w:
        raise ValueError(f"{n} tokens do not form a {h}x{w} grid")
    dst_list, src_list = _partition(h, w, sx, sy)
    dst_idx = torch.tensor(dst_list, device=metric.device)  # (Nd,)
    src_idx = torch.tensor(src_list, device=metric.device)  # (Ns,)
    r = min(r, len(src_list))
    if r <= 0:
        return _identity, _identity

    with torch.no_grad():
        m = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        scores = m[:, src_idx] @ m[:, dst_idx].transpose(1, 2)  # (B, Ns, Nd)
        best_score, best_dst = scores.max(dim=-1)  # (B, Ns)
        order = best_score.argsort(dim=-1, descending=True)  # (B, Ns)
        merged_src = order[:, :r]  # positions in src_idx
        kept_src = order[:, r:]
        merged_dst = best_dst.gather(1, merged_src)  # positions in dst_idx

    def merge(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        src = x[:, src_idx]
        dst = x[:, dst_idx]
        kept = src.gather(1, kept_src.unsqueeze(-1).expand(-1, -1, c))
        moving = src.gather(1, merged_src.unsqueeze(-1).expand(-1, -1, c))
        dst = dst.scatter_reduce(
            1, merged_dst.unsqueeze(-1).expand(-1, -1, c), moving, reduce="mean", include_self=True
        )
        return torch.cat([kept, dst], dim=1)

    def unmerge(y: torch.Tensor) -> torch.Tensor:
        c = y.shape[-1]
        n_kept = kept_src.shape[1]
        kept, dst = y[:, :n_kept], y[:, n_kept:]
        out = y.new_empty(b, n, c)
        out[:, dst_idx] = dst
        src_out = y.new_empty(b, len(src_idx), c)
        src_out.scatter_(1, kept_src.unsqueeze(-1).expand(-1, -1, c), kept)
        src_out.scatter_(
            1,
            merged_src.unsqueeze(-1).expand(-1, -1, c),
            dst.gather(1, merged_dst.unsqueeze(-1).expand(-1, -1, c)),
        )
        out[:, src_idx] = src_out
        return out

    return merge, unmerge


@dataclass
class ToMeState:
    """Shared by one denoiser's hooks: the input size of the current call and what merged."""

    config: Config
    size: tuple[int, int] | None = None
    #: Downsampling of the first self-attention of the current call (the "auto" level).
    first_downsample: int | None = None
    #: (tokens in, tokens attended) of each self-attention of the last call, in call order.
    tokens: list[tuple[int, int]] = field(default_factory=list)

    def begin(self, sample: torch.Tensor) -> None:
        self.size = (int(sample.shape[-2]), int(sample.shape[-1]))
        self.first_downsample = None
        self.tokens = []

    def grid(self, n: int) -> tuple[int, int, int] | None:
        """(downsample, h, w) of an ``n``-token grid of the current input, None if unknown."""
        if self.size is None:
            return None
        height, width = self.size
        downsample = int(math.ceil(math.sqrt(height * width / n)))
        h, w = math.ceil(height / downsample), math.ceil(width / downsample)
        return (downsample, h, w) if h * w == n else None


def _make_hooks():
    from diffusers.hooks import ModelHook

    class SizeHook(ModelHook):
        """On the denoiser: remembers the input's spatial size."""

        def __init__(self, state: ToMeState) -> None:
            super().__init__()
            self.state = state

        def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any):
            sample = kwargs.get("hidden_states", kwargs.get("sample", args[0] if args else None))
            if isinstance(sample, torch.Tensor) and sample.ndim == 4:
                self.state.begin(sample)
            return args, kwargs

    class MergeHook(ModelHook):
        """On a self-attention: merge its input tokens, unmerge its output."""

        def __init__(self, state: ToMeState) -> None:
            super().__init__()
            self.state = state
            self._unmerge: Callable[[torch.Tensor], torch.Tensor] = _identity

        def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any):
            self._unmerge = _identity
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            if x.ndim != 3 or kwargs.get("encoder_hidden_states") is not None:
                return args, kwargs
            cfg = self.state.config
            grid = self.state.grid(x.shape[1])
            if grid is None:
                return args, kwargs
            downsample, h, w = grid
            if self.state.first_downsample is None:
                self.state.first_downsample = downsample
            limit = cfg.max_downsample or self.state.first_downsample
            if downsample > limit:
                self.state.tokens.append((x.shape[1], x.shape[1]))
                return args, kwargs
            merge, unmerge = bipartite_soft_matching(
                x, h, w, cfg.sx, cfg.sy, int(x.shape[1] * cfg.ratio)
            )
            merged = merge(x)
            self.state.tokens.append((x.shape[1], merged.shape[1]))
            self._unmerge = unmerge
            if "hidden_states" in kwargs:
                kwargs = {**kwargs, "hidden_states": merged}
            else:
                args = (merged, *args[1:])
            return args, kwargs

        def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
            unmerge, self._unmerge = self._unmerge, _identity
            return unmerge(output)

    return SizeHook, MergeHook


def self_attentions(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(path, attn1) of every ``BasicTransformerBlock`` self-attention in ``denoiser``."""
    from diffusers.models.attention import BasicTransformerBlock

    out = []
    for name, module in denoiser.named_modules():
        if isinstance(module, BasicTransformerBlock) and not getattr(module, "only_cross_attention", False):
            attn = module.attn1
            if attn is not None and not getattr(attn, "is_cross_attention", False):
                out.append((f"{name}.attn1", attn))
    return out


def apply_tome(denoiser: torch.nn.Module, config: Config) -> ToMeState:
    """Hook ToMe into every self-attention of ``denoiser``; returns the shared state."""
    from diffusers.hooks import HookRegistry

    state = ToMeState(config)
    SizeHook, MergeHook = _make_hooks()
    HookRegistry.check_if_exists_or_initialize(denoiser).register_hook(SizeHook(state), _HOOK_ROOT)
    for _, attn in self_attentions(denoiser):
        HookRegistry.check_if_exists_or_initialize(attn).register_hook(MergeHook(state), _HOOK_ATTN)
    return state


class ToMe(Strategy):
    """Merge similar tokens before each self-attention and unmerge after (ToMe for SD)."""

    name = "tome"
    summary = "token merging in the self-attention (ratio=0.5), deterministic partition"
    Config = Config
    stage = Strategy.STAGE_ARCHITECTURE
    exclusive_group = "token merging"

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        if model.kind not in (ModelKind.UNET, ModelKind.DIT):
            return f"{model.name} ({model.kind}) has no image-token self-attention to merge in"
        if model.kind == ModelKind.DIT:
            return (
                "ToMe for Stable Diffusion merges in a UNet's high-resolution self-attention, "
                "where neighbouring tokens are redundant; a DiT runs every block on the same "
                "few patch tokens, and merging them there without retraining wrecks the image "
                "(digits-dit at ratio 0.5: 16 dB PSNR, prompt adherence 0.93 -> 0.38)"
            )
        if not self_attentions(model.denoiser):
            return (
                f"{type(model.denoiser).__name__} has no diffusers BasicTransformerBlock "
                "self-attention to merge tokens in"
            )
        return None

    def apply(self, model):
        denoiser = model.denoiser
        state = apply_tome(denoiser, self.config)
        denoiser._accelbench_tome = state  # for inspection (tests); not saved
        model.notes["tome"] = {
            "ratio": self.config.ratio,
            "max_downsample": self.config.max_downsample,
            "self_attentions_hooked": len(self_attentions(denoiser)),
        }
        return model
