"""DeepCache (Ma, Fang and Wang, CVPR 2024): reuse a UNet's deep features between steps.

Adjacent denoising steps change the UNet's high-level (deep) features very little. DeepCache
runs the whole UNet on a *refresh* step every ``interval`` steps and caches the deep features;
on the steps between it runs only a shallow branch: the down path as far as skip connection
``branch`` (counting from the input convolution, 0) and the up path from the layer that
consumes that skip, which takes the cached deep feature as its other input (the paper's
Eq. 4-6 and Algorithm 1, "uniform" refresh schedule). Everything below ``branch`` - the rest
of the down path, the mid block and the deep up layers - is skipped.

The step is identified by the index of the current timestep in the scheduler's timesteps, so
step 0 of every generation is a refresh step (no state leaks between calls) and ``interval=1``
reproduces the plain UNet exactly.

Why not the reference package: ``DeepCache`` 0.1.1 (PyPI, 2024, unmaintained) fails on
diffusers 0.42 as shipped - its bundled pipelines import ``PositionNet``, removed from
``diffusers.models.embeddings`` (``import DeepCache.sd.pipeline_stable_diffusion`` raises
ImportError) - and its ``DeepCacheSDHelper``, which does import, maps a branch id to layers with
Stable Diffusion's three skip connections per down block hard-coded (``cache_branch_id % 3``,
``// 3``): on a UNet with another ``layers_per_block`` (``digits-unet`` has one resnet per
block, two skips) every branch but 0 caches the wrong layers. This module enumerates the skip
connections of the actual ``UNet2DConditionModel`` and hooks its layers with diffusers' own
``HookRegistry``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.core.kinds import ModelKind
from strategies.core.base import Strategy, StrategyConfig, StrategyError, param

_HOOK_STEP = "accelbench_deepcache_step"
_HOOK_LAYER = "accelbench_deepcache_layer"


@dataclass(frozen=True)
class Config(StrategyConfig):
    """When to refresh and where to cut."""

    interval: int = param(3, "run the full UNet every `interval` steps (1: never reuse)", low=1, high=1000,
                          below_model="steps")
    branch: int = param(
        0, "skip connection of the shallow branch (0: the input convolution's; higher: deeper)", low=0
    )

    always_show = ("interval",)


@dataclass
class DeepCacheState:
    """Shared by the hooks of one UNet: the step decision, the cache and what ran."""

    interval: int
    step_index: Callable[[Any], int | None]
    refresh: bool = True
    step: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    #: Names of the layers skipped in the current call (for tests and notes).
    skipped: list[str] = field(default_factory=list)
    calls: int = 0
    partial_calls: int = 0

    @torch.compiler.disable
    def begin(self, timestep: Any) -> None:
        """Decide, at the start of a UNet call, whether it is a refresh step."""
        step = self.step_index(timestep)
        self.step = step
        self.refresh = step is None or step % self.interval == 0 or not self.cache
        self.skipped = []
        self.calls += 1
        self.partial_calls += 0 if self.refresh else 1


@dataclass(frozen=True)
class Layer:
    """One layer of the UNet that DeepCache may skip: its module path and whether it is deep."""

    path: str
    module: torch.nn.Module
    deep: bool


def skip_connections(unet: torch.nn.Module) -> list[str]:
    """Module paths producing each skip connection, in order (0 is ``conv_in``)."""
    skips = ["conv_in"]
    for i, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j in range(len(block.resnets)):
            if attentions is not None and len(attentions) > j:
                skips.append(f"down_blocks.{i}.attentions.{j}")
            else:
                skips.append(f"down_blocks.{i}.resnets.{j}")
        if getattr(block, "downsamplers", None):
            skips.append(f"down_blocks.{i}.downsamplers.0")
    return skips


def plan(unet: torch.nn.Module, branch: int) -> list[Layer]:
    """The layers to hook for ``branch``: whole blocks where a block is entirely deep, single
    layers in the block where the cut falls. Raises :class:`StrategyError` for a branch out of
    range."""
    skips = skip_connections(unet)
    if not 0 <= branch < len(skips):
        raise StrategyError(
            f"branch={branch} is out of range: this UNet has {len(skips)} skip connections "
            f"(branch 0..{len(skips) - 1})"
        )
    layers: list[Layer] = []
    index = 1  # skip 0 is conv_in, always shallow
    for i, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        n = len(block.resnets) + (1 if getattr(block, "downsamplers", None) else 0)
        block_skips = list(range(index, index + n))
        index += n
        if all(s > branch for s in block_skips):
            layers.append(Layer(f"down_blocks.{i}", block, True))
            continue
        for j, resnet in enumerate(block.resnets):
            deep = block_skips[j] > branch
            if deep:
                layers.append(Layer(f"down_blocks.{i}.resnets.{j}", resnet, True))
                if attentions is not None and len(attentions) > j:
                    layers.append(Layer(f"down_blocks.{i}.attentions.{j}", attentions[j], True))
        if getattr(block, "downsamplers", None) and block_skips[-1] > branch:
            layers.append(Layer(f"down_blocks.{i}.downsamplers.0", block.downsamplers[0], True))
    layers.append(Layer("mid_block", unet.mid_block, True))
    remaining = list(range(len(skips)))
    for k, block in enumerate(unet.up_blocks):
        r = len(block.resnets)
        consumed, remaining = remaining[-r:], remaining[:-r]
        # resnet j consumes consumed[-1 - j]
        if all(s > branch for s in consumed):
            layers.append(Layer(f"up_blocks.{k}", block, True))
            continue
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            if consumed[-1 - j] > branch:
                layers.append(Layer(f"up_blocks.{k}.resnets.{j}", resnet, True))
                if attentions is not None and len(attentions) > j:
                    layers.append(Layer(f"up_blocks.{k}.attentions.{j}", attentions[j], True))
    return layers


def _make_hooks():
    from diffusers.hooks import ModelHook

    class StepHook(ModelHook):
        """On the UNet: decides refresh or partial at the start of each call."""

        def __init__(self, state: DeepCacheState) -> None:
            super().__init__()
            self.state = state

        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            self.state.begin(timestep)
            return self.fn_ref.original_forward(*args, **kwargs)

    class LayerHook(ModelHook):
        """On a deep layer: computes and caches on refresh steps, returns the cache otherwise."""

        def __init__(self, state: DeepCacheState, path: str) -> None:
            super().__init__()
            self.state = state
            self.path = path

        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not self.state.refresh and self.path in self.state.cache:
                self.state.skipped.append(self.path)
                return self.state.cache[self.path]
            output = self.fn_ref.original_forward(*args, **kwargs)
            self.state.cache[self.path] = output
            return output

    return StepHook, LayerHook


def scheduler_step_index(pipe: Any) -> Callable[[Any], int | None]:
    """Index of a timestep in ``pipe.scheduler.timesteps`` (read at call time, so a scheduler
    swapped in later is followed); None when it is not there."""

    def step_index(timestep: Any) -> int | None:
        if timestep is None:
            return None
        timesteps = getattr(pipe.scheduler, "timesteps", None)
        if timesteps is None:
            return None
        t = torch.as_tensor(timestep).reshape(-1)[0].to(timesteps.device, timesteps.dtype)
        hits = (timesteps == t).nonzero()
        return int(hits[0, 0]) if len(hits) else None

    return step_index


def apply_deepcache(
    unet: torch.nn.Module, interval: int, branch: int, step_index: Callable[[Any], int | None]
) -> DeepCacheState:
    """Hook ``unet`` (a ``UNet2DConditionModel``) with DeepCache; returns the shared state."""
    from diffusers.hooks import HookRegistry

    layers = plan(unet, branch)
    StepHook, LayerHook = _make_hooks()
    state = DeepCacheState(interval=interval, step_index=step_index)
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(StepHook(state), _HOOK_STEP)
    for layer in layers:
        registry = HookRegistry.check_if_exists_or_initialize(layer.module)
        registry.register_hook(LayerHook(state, layer.path), _HOOK_LAYER)
    return state


def remove_deepcache(unet: torch.nn.Module) -> None:
    """Remove the hooks :func:`apply_deepcache` added."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(unet)
    registry.remove_hook(_HOOK_STEP, recurse=False)
    registry.remove_hook(_HOOK_LAYER, recurse=True)


class DeepCache(Strategy):
    """Reuse the UNet's deep features on all but every ``interval``-th step (DeepCache)."""

    name = "deepcache"
    summary = "DeepCache: reuse a UNet's deep features between refresh steps (interval=3, branch=0)"
    Config = Config
    stage = Strategy.STAGE_CACHING
    exclusive_group = "feature cache"

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        denoiser = model.denoiser
        if model.kind != ModelKind.UNET or not all(
            hasattr(denoiser, a) for a in ("down_blocks", "mid_block", "up_blocks", "conv_in")
        ):
            return (
                f"DeepCache caches the deep branch of a UNet's skip connections; {model.name}'s "
                f"denoiser ({type(denoiser).__name__}, {model.kind}) has no such structure "
                "(for transformers use fbcache, taylorseer, pab or fastercache)"
            )
        if model.pipe is None or not hasattr(model.pipe, "scheduler"):
            return f"{model.name} has no diffusion scheduler to tell the steps apart"
        try:
            plan(denoiser, self.config.branch)
        except StrategyError as exc:
            return str(exc)
        return None

    def apply(self, model):
        denoiser = model.denoiser
        state = apply_deepcache(
            denoiser, self.config.interval, self.config.branch, scheduler_step_index(model.pipe)
        )
        layers = plan(denoiser, self.config.branch)
        model.notes["deepcache"] = {
            "interval": self.config.interval,
            "branch": self.config.branch,
            "skip_connections": len(skip_connections(denoiser)),
            "cached_layers": [layer.path for layer in layers],
        }
        denoiser._accelbench_deepcache = state  # for inspection (tests); not saved
        return model
