"""``seacache``: diffusers' SeaCache (Spectral-Evolution-Aware cache, 2026).

Filter the noisy latents with a spectral prior for the current noise level (the SEA
indicator); while the indicator's accumulated relative change since the last full step stays
below ``threshold``, replace the transformer block stack with the cached residual (order 1:
extrapolated from the last two full steps). Whether a step is skipped depends on the values
the model computes (``depends_on_activations``).

diffusers ships SeaCache for video transformers (Wan, Cosmos 3): two things it needs are
added here for image transformers. ``raw_vision_callback`` hands it the denoiser's spatial
input ``hidden_states`` (B, C, H, W) as one (C, 1, H, W) latent per sample (a one-frame video),
packed tokens laid back on their grid (FLUX, FLUX.2, Qwen-Image);
and where the denoising loop's cache context lacks the scheduler coordinates SeaCache reads
(``step_index``, ``sigma``, ``num_inference_steps``), a wrapper of its root hook's
``pre_forward`` fills them in: the step counted from the start of the generation, the step
count from the call arguments and ``sigma = timestep / num_train_timesteps`` (exact for flow
matching, the normalised timestep for DDPM-type schedules). Denoisers whose input cannot be
laid on an image are refused. See :mod:`strategies.caches`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.caches.common import (
    CallState,
    DiffusersCache,
    register_hook,
    stack_residual_reason,
    text_dropping_blocks,
    unwrap,
)
from strategies.caches.first_block import _TEXT_PASSTHROUGH, _text_passthrough_hook
from strategies.core.base import StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

_ROOT_HOOK = "sea_cache_root"  # diffusers.hooks.sea_cache._SEA_CACHE_ROOT_HOOK


@dataclass(frozen=True)
class SeaCacheConfig(StrategyConfig):
    """SeaCache's knobs (diffusers' defaults; ``power_exp`` 2 rather than the video 3, for a
    two-dimensional image spectrum is flatter along its one frame)."""

    threshold: float = param(
        0.25, "accumulated relative-L1 budget of the indicator (0 never skips)", low=0.0, high=100.0
    )
    order: int = param(
        1, "residual prediction: 0 reuses, 1 extrapolates the last two", low=0, high=1
    )
    warmup: int = param(1, "first steps always computed", low=0, high=1000, below_model="steps")
    end: int = param(1, "last steps always computed", low=0, high=1000, below_model="steps")
    max_skip: int = param(2, "most consecutive steps reused (0: no limit)", low=0, high=1000)
    power_exp: float = param(2.0, "exponent of the clean-signal power prior", low=0.1, high=10.0)

    always_show = ("threshold",)


def image_latents(
    module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[torch.Tensor] | None:
    """SeaCache's ``raw_vision_callback`` for image transformers: each sample of the input
    ``hidden_states`` as a one-frame (C, 1, H, W) latent; None for any other input.

    A (B, C, H, W) input is taken as it is. Packed tokens (B, N, D) are laid back on their
    grid, which FLUX's and FLUX.2's ``img_ids`` (rows and columns in their second and third
    columns) and Qwen-Image's ``img_shapes`` give: (D, 1, h, w), a 2 x 2 patch's channels
    at each token (the tokens are packed row by row in all three)."""
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    if not isinstance(hidden, torch.Tensor):
        return None
    if hidden.ndim == 4:
        return [sample.unsqueeze(1) for sample in hidden.unbind(0)]
    grid = token_grid(kwargs) if hidden.ndim == 3 else None
    if grid is None or grid[0] * grid[1] != hidden.shape[1]:
        return None
    rows, cols = grid
    return [sample.transpose(0, 1).reshape(-1, 1, rows, cols) for sample in hidden.unbind(0)]


def token_grid(kwargs: dict[str, Any]) -> tuple[int, int] | None:
    """The (rows, columns) of packed image tokens, from ``img_shapes`` or ``img_ids``."""
    shapes = kwargs.get("img_shapes")
    if shapes:
        first = shapes[0][0] if isinstance(shapes[0], list) else shapes[0]
        return int(first[-2]), int(first[-1])
    ids = kwargs.get("img_ids")
    if isinstance(ids, torch.Tensor) and ids.shape[-1] >= 3:
        ids = ids.reshape(-1, ids.shape[-1])
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1
    return None


class _Coordinates:
    """The root hook's ``pre_forward`` wrapped: first fills the scheduler coordinates SeaCache
    reads into a cache context that lacks them. (An object, not a closure; note that a
    ``clone()`` of a model with any diffusers cache on does not work, as for the others.)"""

    def __init__(self, root: Any, pre_forward: Any, steps: int, train_steps: int) -> None:
        self.root, self.pre_forward = root, pre_forward
        self.steps, self.train_steps = steps, train_steps
        self.last: float | None = None
        self.step = -1

    def __call__(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        context = self.root.state_manager._context
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if context is not None and timestep is not None:
            value = float(torch.as_tensor(timestep).reshape(-1)[0])
            if self.last is None or value > self.last:
                self.step = -1  # a new generation
            if value != self.last:
                self.step += 1  # (Heun's second evaluation repeats the timestep)
            self.last = value
            filled: dict[str, Any] = {}
            if context.step_index is None:
                filled["step_index"] = min(self.step, self.steps - 1)
            if context.num_inference_steps is None:
                filled["num_inference_steps"] = self.steps
            if context.sigma is None:
                filled["sigma"] = min(max(value / self.train_steps, 0.0), 1.0)
            if filled:  # CacheContext is frozen; one StateManager serves all SeaCache hooks
                self.root.state_manager.set_context(dataclasses.replace(context, **filled))
        return self.pre_forward(module, *args, **kwargs)


def _spatial_input(denoiser: torch.nn.Module) -> bool:
    """True when :func:`image_latents` can lay ``denoiser``'s input on an image: it
    patchifies a (B, C, H, W) input itself (a ``Conv2d`` patch embedding, as SD3's, PixArt's
    and Sana's), or takes packed tokens with their grid (``img_ids``: FLUX, FLUX.2;
    ``img_shapes``: Qwen-Image)."""
    import inspect

    embed = getattr(denoiser, "pos_embed", None) or getattr(denoiser, "patch_embed", None)
    if isinstance(getattr(embed, "proj", None), torch.nn.Conv2d):
        return True
    takes = inspect.signature(type(denoiser).forward).parameters
    return "img_ids" in takes or "img_shapes" in takes


class SeaCache(DiffusersCache):
    """diffusers' SeaCache: reuse the block stack's residual while the SEA indicator is still."""

    name = "seacache"
    summary = "diffusers SeaCache on an image transformer (threshold=0.25)"
    Config = SeaCacheConfig
    diffusers_config = "SeaCacheConfig"
    #: Whether a step is skipped depends on how the filtered latents change.
    depends_on_activations = True

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        reason = stack_residual_reason(denoiser, "SeaCache")
        if reason:
            return reason
        if not _spatial_input(denoiser):
            return (
                f"{type(denoiser).__name__} takes neither a spatial (B, C, H, W) latent nor "
                "packed tokens with their grid (img_ids, img_shapes), so SeaCache has no image "
                "to filter for its indicator"
            )
        if not model.steps:
            return f"SeaCache needs the number of denoising steps; {model.name} has none in its call arguments"
        return None

    def make_config(self, model: ReferenceModel, state: CallState | None) -> Any:
        from diffusers.hooks import SeaCacheConfig as DiffusersSeaCacheConfig

        cfg = self.config
        return DiffusersSeaCacheConfig(
            threshold=cfg.threshold,
            residual_order=cfg.order,
            retention_steps=cfg.warmup,
            cache_end_steps=cfg.end,
            max_consecutive_cached=cfg.max_skip,
            power_exp=cfg.power_exp,
            raw_vision_callback=image_latents,
        )

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        """Put SeaCache on, then wrap its root hook's ``pre_forward`` to fill in the scheduler
        coordinates the cache context lacks (see the module docstring). A block that drops
        the text stream (SD3's last joint block) first gets FirstBlockCache's text pass-through
        hook, without which SeaCache records no residual history and never reuses one."""
        from diffusers.hooks import HookRegistry

        denoiser = unwrap(model.denoiser)
        dropping = text_dropping_blocks(denoiser)
        for name in dropping:
            register_hook(denoiser.get_submodule(name), _text_passthrough_hook(), _TEXT_PASSTHROUGH)
        model = super().apply(model)
        registry = HookRegistry.check_if_exists_or_initialize(denoiser)
        index = registry._hook_order.index(_ROOT_HOOK)  # diffusers keeps no public handle
        scheduler = getattr(model.pipe, "scheduler", None)
        train_steps = int(
            getattr(getattr(scheduler, "config", None), "num_train_timesteps", 1000) or 1000
        )
        fn_ref = registry._fn_refs[index]
        root = registry.hooks[_ROOT_HOOK]
        fn_ref.pre_forward = _Coordinates(root, fn_ref.pre_forward, int(model.steps), train_steps)
        if dropping:
            model.notes[self.name]["text_passthrough"] = dropping
        model.notes[self.name]["coordinates"] = (
            f"sigma = timestep / {train_steps} where the context has none"
        )
        return model
