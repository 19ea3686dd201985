"""diffusers' own cache hooks on transformer denoisers: FirstBlockCache, TaylorSeer, Pyramid
Attention Broadcast and FasterCache, one registry name each.

Each strategy builds the technique's diffusers config and calls ``denoiser.enable_cache(config)``
(:class:`diffusers.models.cache_utils.CacheMixin`); nothing of the techniques is reimplemented.
The denoising loop of the embedded pipelines wraps every denoiser call in
``denoiser.cache_context("cond_uncond")`` (guidance batched) as diffusers' pipelines do, and
``maybe_free_model_hooks()`` at the end of each call resets the hooks' state, so every
generation starts from an empty cache.

* ``fbcache`` - First Block Cache (ParaAttention; TeaCache's idea): run the first transformer
  block; if its output residual changed by less than ``threshold`` (relative L1) since the last
  full step, reuse the cached residual of all the other blocks.
* ``taylorseer`` - TaylorSeer (Liu et al. 2025): compute the hooked modules fully every
  ``interval`` steps (after ``warmup`` full steps) and predict their outputs in between with a
  Taylor expansion of order ``order`` in the step index.
* ``pab`` - Pyramid Attention Broadcast (Zhao et al. 2024): inside a timestep window, reuse
  self-attention outputs for ``spatial`` steps and cross-attention outputs for ``cross`` steps
  (cross-attention changes least, so it is broadcast furthest).
* ``fastercache`` - FasterCache (Lv et al. 2024): reuse attention outputs between steps with a
  linear correction, and skip the unconditional half of the guidance batch on most steps,
  rebuilding it from the conditional output and the cached low/high-frequency difference
  (guidance-distilled models such as FLUX.1 [dev] have no such batch: attention reuse only).

Only the techniques this diffusers offers are registered.

Transformers without ``CacheMixin``: ``enable_cache`` only dispatches to diffusers' public
``apply_*`` hook functions, which work on any module, so a transformer denoiser that diffusers
0.42 leaves without the mixin (SD3's, PixArt's and Sana's) gets the same hooks through those
functions. Their pipelines also open no ``cache_context`` and have no ``current_timestep``, so
the strategy adds what they would: a hook on the denoiser (outside the cache hooks) that runs
every call in the ``"cond_uncond"`` context (guidance is batched there), records the call's
timestep for PAB's and FasterCache's timestep windows, and resets the hooks' state when a new
generation starts (the timestep goes up again: within a generation it only falls, or repeats
for Heun's second evaluation). UNets (no transformer block lists; use deepcache) and layouts a
technique cannot hook (FirstBlockCache needs blocks in diffusers' ``TransformerBlockRegistry``:
Sana's are not) are refused with the reason.

Which speedups depend on the activations (``depends_on_activations``): FirstBlockCache skips a
step when the first block's residual changed less than ``threshold``, so how many steps it
skips depends on the values the model computes, and a random-weight model's are not a real
model's. TaylorSeer, PAB and FasterCache follow fixed schedules (every ``interval``-th step,
timestep windows), so the work they save is the same for any weights (their error is not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.base import Strategy, StrategyConfig, param

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


_HOOK_CONTEXT = "accelbench_cache_context"

#: diffusers cache config class -> name of its ``apply_*`` function in ``diffusers.hooks``.
_APPLY = {
    "FirstBlockCacheConfig": "apply_first_block_cache",
    "TaylorSeerCacheConfig": "apply_taylorseer_cache",
    "PyramidAttentionBroadcastConfig": "apply_pyramid_attention_broadcast",
    "FasterCacheConfig": "apply_faster_cache",
}


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "_orig_mod", module)


def has_cache_mixin(denoiser: torch.nn.Module) -> bool:
    """True when ``denoiser`` has diffusers' ``CacheMixin`` (``enable_cache``,
    ``cache_context``)."""
    from diffusers.models.cache_utils import CacheMixin

    return isinstance(denoiser, CacheMixin)


def cache_enabled(denoiser: torch.nn.Module) -> bool:
    """True when a diffusers cache is already on ``denoiser`` (by the mixin or by this module)."""
    if has_cache_mixin(denoiser) and denoiser.is_cache_enabled:
        return True
    return getattr(denoiser, "_accelbench_cache", None) is not None


@dataclass
class CallState:
    """What the call-context hook knows: the timestep of the current denoiser call."""

    timestep: float | None = None
    #: Generations seen (the times the hooks' state was reset for a new one).
    generations: int = 0


class RecordedTimestep:
    """The timestep source of PAB and FasterCache: the call-context hook's record, or the
    pipeline's ``current_timestep``. An object rather than a lambda, so that a deep copy of
    the model (``clone()``) copies it along with the state or pipeline it reads."""

    def __init__(self, state: CallState | None = None, pipe: Any = None) -> None:
        self.state = state
        self.pipe = pipe

    def __call__(self) -> Any:
        if self.state is not None:
            return self.state.timestep
        return self.pipe.current_timestep


@torch.compiler.disable
def _begin_call(module: torch.nn.Module, state: CallState, timestep: Any) -> None:
    """Record a denoiser call's timestep; reset the cache hooks when a generation starts."""
    from diffusers.hooks import HookRegistry

    if timestep is None:
        return
    value = float(torch.as_tensor(timestep).reshape(-1)[0])
    if state.timestep is None or value > state.timestep:
        # First call, or the timestep went up again: a new generation starts.
        HookRegistry.check_if_exists_or_initialize(module).reset_stateful_hooks(recurse=True)
        state.generations += 1
    state.timestep = value


def _call_context_hook(state: CallState, enter_context: bool):
    """A diffusers ``ModelHook`` for the denoiser: records each call's timestep, resets the
    cache hooks' state when a new generation starts and, if ``enter_context``, runs the call
    in the ``"cond_uncond"`` cache context."""
    from diffusers.hooks import ModelHook
    from diffusers.models.cache_utils import CacheMixin

    class CallContextHook(ModelHook):
        def __init__(self) -> None:
            super().__init__()
            self.state = state
            self.enter_context = enter_context

        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            _begin_call(module, self.state, timestep)
            if not self.enter_context:
                return self.fn_ref.original_forward(*args, **kwargs)
            with CacheMixin.cache_context(module, "cond_uncond", timestep=self.state.timestep):
                return self.fn_ref.original_forward(*args, **kwargs)

    return CallContextHook()


def enable(denoiser: torch.nn.Module, config: Any, state: CallState | None) -> None:
    """Put diffusers' cache hooks for ``config`` on ``denoiser``: ``enable_cache`` where it has
    ``CacheMixin``, else the same ``apply_*`` function; then, with a ``state``, the
    call-context hook (which also opens the cache context where there is no mixin, since
    then no pipeline can)."""
    import diffusers.hooks
    from diffusers.hooks import HookRegistry

    mixin = has_cache_mixin(denoiser)
    if mixin:
        denoiser.enable_cache(config)
    else:
        getattr(diffusers.hooks, _APPLY[type(config).__name__])(denoiser, config)
    registry = HookRegistry.check_if_exists_or_initialize(denoiser)
    registry.invalidate_child_registries_cache()
    denoiser._accelbench_cache = config  # what is enabled (for cache_enabled); not saved
    if state is not None:
        registry.register_hook(_call_context_hook(state, enter_context=not mixin), _HOOK_CONTEXT)


def pipeline_timestep(model) -> bool:
    """True when the model's pipeline reports the current timestep (``current_timestep``)."""
    return model.pipe is not None and hasattr(type(model.pipe), "current_timestep")


def _attention_modules(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from diffusers.hooks._common import _ATTENTION_CLASSES

    return [(n, m) for n, m in denoiser.named_modules() if isinstance(m, _ATTENTION_CLASSES)]


def _block_lists(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return [
        (name, child)
        for name, child in denoiser.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
    ]


def text_dropping_blocks(denoiser: torch.nn.Module) -> list[str]:
    """Blocks whose output has no text stream (SD3's last joint block, ``context_pre_only``):
    they return None where the other blocks return the encoder hidden states."""
    return [
        f"{name}.{i}"
        for name, blocks in _block_lists(denoiser)
        for i, block in enumerate(blocks)
        if getattr(block, "context_pre_only", False)
    ]


class _DiffusersCache(Strategy):
    """Common checks and application of one diffusers cache hook."""

    stage = Strategy.STAGE_CACHING
    exclusive_group = "feature cache"
    #: Name of the technique's config class in ``diffusers.hooks``.
    diffusers_config: ClassVar[str]

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        import diffusers.hooks

        if not hasattr(diffusers.hooks, self.diffusers_config):
            import diffusers

            return f"diffusers {diffusers.__version__} has no {self.diffusers_config}"
        denoiser = _unwrap(model.denoiser)
        if not has_cache_mixin(denoiser) and not _block_lists(denoiser):
            hint = " (for a UNet use deepcache)" if model.kind == "diffusion-unet" else ""
            return (
                f"{type(denoiser).__name__} has neither diffusers' CacheMixin nor lists of "
                f"transformer blocks, which diffusers' cache hooks work on{hint}"
            )
        if cache_enabled(denoiser):
            return f"{type(denoiser).__name__} already has a cache enabled"
        return self._supports_layout(model, denoiser)

    def _supports_layout(self, model, denoiser: torch.nn.Module) -> str | None:
        return None

    def _needs_timestep(self, model) -> str | None:
        if model.pipe is None:
            return f"{self.name} needs the diffusion pipeline's timesteps; {model.name} has none"
        return None

    def make_config(self, model, state: CallState | None) -> Any:
        """The diffusers config object for ``model`` (``state``: see :meth:`timestep_source`)."""
        raise NotImplementedError

    @staticmethod
    def timestep_source(model, state: CallState | None) -> RecordedTimestep:
        """A callable returning the current timestep: the pipeline's ``current_timestep``
        where it reports one (``state`` is None then), else the timestep the call-context
        hook recorded for the running denoiser call."""
        return RecordedTimestep(state=state, pipe=model.pipe if state is None else None)

    def apply(self, model):
        denoiser = _unwrap(model.denoiser)
        # The pipelines of mixin-less transformers open no cache context and report no
        # timestep: the call-context hook (and its state) stands in for them.
        pipeline_does_it = has_cache_mixin(denoiser) and pipeline_timestep(model)
        state = None if pipeline_does_it else CallState()
        config = self.make_config(model, state)
        enable(denoiser, config, state)
        model.notes[self.name] = {
            "diffusers_config": repr(config).replace("\n", ""),
            "hooks": "enable_cache" if has_cache_mixin(denoiser) else "diffusers.hooks apply_*",
            "context": "the pipeline's" if state is None else "call-context hook (cond_uncond)",
        }
        denoiser._accelbench_cache_state = state  # for inspection (tests); not saved
        return model


# -- FirstBlockCache ---------------------------------------------------------------------
@dataclass(frozen=True)
class FBCacheConfig(StrategyConfig):
    """First Block Cache's one knob.

    The default, 0.1, is twice diffusers' own 0.05: on ``digits-dit`` (25 DDIM steps) 0.05
    never reuses anything, while 0.1 reuses the cached blocks on 8 of 25 steps at 39.6 dB
    PSNR against the plain model (0.2: 15 steps, 30.3 dB).
    """

    threshold: float = param(
        0.1,
        "reuse the other blocks while the first block's residual changes less than this "
        "(relative L1; 0 never reuses)",
        low=0.0,
        high=10.0,
    )

    always_show = ("threshold",)


_TEXT_PASSTHROUGH = "accelbench_text_passthrough"


def _text_passthrough_hook():
    """A diffusers ``ModelHook`` for a joint block that returns no text stream
    (``context_pre_only``): it returns the block's text input in that place instead of None."""
    from diffusers.hooks import ModelHook

    class TextPassthrough(ModelHook):
        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            out = self.fn_ref.original_forward(*args, **kwargs)
            if isinstance(out, tuple) and len(out) == 2 and out[0] is None:
                text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
                return text, out[1]
            return out

    return TextPassthrough()


class FBCache(_DiffusersCache):
    """diffusers' FirstBlockCache: skip all but the first block while its output barely moves."""

    name = "fbcache"
    summary = "diffusers FirstBlockCache on a transformer (threshold=0.1)"
    Config = FBCacheConfig
    diffusers_config = "FirstBlockCacheConfig"
    #: Whether a step is skipped depends on how much the first block's residual changed.
    depends_on_activations = True

    def _supports_layout(self, model, denoiser) -> str | None:
        from diffusers.hooks._helpers import TransformerBlockRegistry

        blocks = [b for _, lst in _block_lists(denoiser) for b in lst]
        if len(blocks) < 2:
            return f"{type(denoiser).__name__} has {len(blocks)} transformer block(s); FirstBlockCache needs 2 or more"
        for block in blocks:
            try:
                TransformerBlockRegistry.get(type(block))
            except ValueError:
                return f"{type(block).__name__} is not in diffusers' TransformerBlockRegistry"
        return None

    def apply(self, model):
        """Put FirstBlockCache on the denoiser; a block that drops the text stream (SD3's last
        joint block returns None for it) first gets a hook that hands its text input through
        instead, so that the cache's residuals of the text stream have something to subtract
        (SD3's transformer never reads the text stream after that block)."""
        from diffusers.hooks import HookRegistry

        denoiser = _unwrap(model.denoiser)
        dropping = text_dropping_blocks(denoiser)
        for name in dropping:
            registry = HookRegistry.check_if_exists_or_initialize(denoiser.get_submodule(name))
            registry.register_hook(_text_passthrough_hook(), _TEXT_PASSTHROUGH)
        model = super().apply(model)
        if dropping:
            model.notes[self.name]["text_passthrough"] = dropping
        return model

    def make_config(self, model, state):
        from diffusers.hooks import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=self.config.threshold)


# -- TaylorSeer --------------------------------------------------------------------------
TAYLORSEER_TARGETS = ("attn", "attn-ff", "lite")


@dataclass(frozen=True)
class TaylorSeerConfig(StrategyConfig):
    """When TaylorSeer computes, and what it predicts.

    The default interval, 3, is shorter than diffusers' 5 (chosen for 50-step FLUX sampling):
    with 25 steps on ``digits-dit``, interval 5 predicts 17 of 25 steps and costs 27 dB PSNR
    and a third of the prompt adherence; interval 3 computes 11 and keeps 34 dB.
    """

    interval: int = param(3, "steps between full computations", low=1, high=1000, below_model="steps")
    warmup: int = param(3, "full steps before predicting starts", low=0, high=1000, below_model="steps")
    order: int = param(1, "order of the Taylor expansion", low=0, high=4)
    targets: str = param(
        "attn",
        "modules predicted: attention outputs, attention and feed-forward outputs (attn-ff), or lite "
        "(skip whole blocks, predict the output projection)",
        choices=TAYLORSEER_TARGETS,
    )
    factors_dtype: str = param("fp32", "dtype the Taylor factors are kept in", choices=tuple(_DTYPES))

    always_show = ("interval",)


class TaylorSeer(_DiffusersCache):
    """diffusers' TaylorSeer cache: predict module outputs between full steps."""

    name = "taylorseer"
    summary = "diffusers TaylorSeer cache on a transformer (interval=3, order=1)"
    Config = TaylorSeerConfig
    diffusers_config = "TaylorSeerCacheConfig"

    def identifiers(self, denoiser) -> list[str]:
        """Regexes (re.fullmatch) of the modules whose outputs are predicted."""
        lists = [name for name, _ in _block_lists(denoiser)]
        targets = set()
        for name, _ in _attention_modules(denoiser):
            head = name.split(".")[0]
            if head in lists:
                targets.add(re.sub(r"^(\w+)\.\d+\.", r"\1\\.\\d+\\.", name))
        if self.config.targets == "attn-ff":
            for name, _ in denoiser.named_modules():
                head = name.split(".")[0]
                if head in lists and name.count(".") == 2 and name.endswith(".ff"):
                    targets.add(re.sub(r"^(\w+)\.\d+\.", r"\1\\.\\d+\\.", name))
        return sorted(targets)

    def _supports_layout(self, model, denoiser) -> str | None:
        if self.config.targets == "lite":
            if not hasattr(denoiser, "proj_out"):
                return f"TaylorSeer's lite mode predicts proj_out, which {type(denoiser).__name__} lacks"
            dropping = text_dropping_blocks(denoiser)
            if dropping:
                return (
                    f"{dropping[0]} returns no text stream (context_pre_only, as SD3's last "
                    "joint block), and TaylorSeer's lite mode records the dtype and shape of "
                    "every output of the blocks it skips, which fails on None"
                )
            return None
        if not self.identifiers(denoiser):
            return f"{type(denoiser).__name__} has no attention modules inside transformer block lists"
        return None

    def make_config(self, model, state):
        from diffusers.hooks import TaylorSeerCacheConfig

        cfg = self.config
        lite = cfg.targets == "lite"
        return TaylorSeerCacheConfig(
            cache_interval=cfg.interval,
            disable_cache_before_step=cfg.warmup,
            max_order=cfg.order,
            taylor_factors_dtype=_DTYPES[cfg.factors_dtype],
            cache_identifiers=None if lite else self.identifiers(_unwrap(model.denoiser)),
            use_lite_mode=lite,
        )


# -- Pyramid Attention Broadcast ---------------------------------------------------------
@dataclass(frozen=True)
class PABConfig(StrategyConfig):
    """Broadcast ranges and the timestep window."""

    spatial: int = param(2, "reuse self-attention outputs this many steps (1: never)", low=1, high=100)
    cross: int = param(6, "reuse cross-attention outputs this many steps (1: never)", low=1, high=100)
    t_low: int = param(100, "broadcast only at timesteps above this", low=-1, high=1000)
    t_high: int = param(800, "and below this", low=0, high=1001)

    always_show = ("spatial", "cross")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.t_low >= self.t_high:
            from strategies.base import StrategyError

            raise StrategyError(f"t_low={self.t_low} must be below t_high={self.t_high}")


class PAB(_DiffusersCache):
    """diffusers' Pyramid Attention Broadcast."""

    name = "pab"
    summary = "diffusers Pyramid Attention Broadcast on a transformer (spatial=2, cross=6)"
    Config = PABConfig
    diffusers_config = "PyramidAttentionBroadcastConfig"

    def _supports_layout(self, model, denoiser) -> str | None:
        reason = self._needs_timestep(model)
        if reason:
            return reason
        if not _attention_modules(denoiser):
            return f"{type(denoiser).__name__} has no diffusers attention modules"
        return None

    def make_config(self, model, state):
        from diffusers.hooks import PyramidAttentionBroadcastConfig

        cfg = self.config
        window = (cfg.t_low, cfg.t_high)
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=cfg.spatial if cfg.spatial > 1 else None,
            cross_attention_block_skip_range=cfg.cross if cfg.cross > 1 else None,
            spatial_attention_timestep_skip_range=window,
            cross_attention_timestep_skip_range=window,
            current_timestep_callback=self.timestep_source(model, state),
        )

    def apply(self, model):
        if self.config.spatial == 1 and self.config.cross == 1:
            # diffusers would fall back to spatial=2: keep "1" meaning "never reuse".
            model.notes[self.name] = {"note": "spatial=1 and cross=1: nothing is broadcast"}
            return model
        return super().apply(model)


# -- FasterCache -------------------------------------------------------------------------
@dataclass(frozen=True)
class FasterCacheConfig(StrategyConfig):
    """FasterCache's reuse ranges."""

    spatial: int = param(2, "recompute self-attention every this many steps", low=1, high=100)
    uncond: int = param(5, "compute the unconditional batch every this many steps", low=1, high=100)
    weight: float = param(0.5, "weight of the attention-output extrapolation", low=0.0, high=2.0)

    always_show = ("spatial", "uncond")


def batches_guidance(model, denoiser: torch.nn.Module) -> bool:
    """True when the denoiser sees classifier-free guidance as one batch (unconditional and
    conditional halves): guidance above 1 on a model without a guidance input. FLUX.1 [dev]
    takes guidance as an input (``guidance_embeds``, guidance-distilled), so its batch is not
    split and FasterCache only reuses attention there."""
    if float(model.call_args.get("guidance_scale", 1.0)) <= 1.0:
        return False
    config = getattr(denoiser, "config", None)
    return not bool(getattr(config, "guidance_embeds", False))


def batched_inputs() -> list[str]:
    """The denoiser inputs FasterCache halves when it skips the unconditional batch: diffusers'
    list plus ``pooled_projections`` (SD3's pooled text embedding, one row per batch entry,
    which diffusers' list misses)."""
    import dataclasses

    from diffusers.hooks import FasterCacheConfig as DiffusersFasterCacheConfig

    field = next(
        f for f in dataclasses.fields(DiffusersFasterCacheConfig)
        if f.name == "_unconditional_conditional_input_kwargs_identifiers"
    )
    return [*field.default, "pooled_projections"]


class FasterCache(_DiffusersCache):
    """diffusers' FasterCache: attention reuse plus the CFG cache."""

    name = "fastercache"
    summary = "diffusers FasterCache on a transformer (spatial=2, uncond=5)"
    Config = FasterCacheConfig
    diffusers_config = "FasterCacheConfig"

    def _supports_layout(self, model, denoiser) -> str | None:
        reason = self._needs_timestep(model)
        if reason:
            return reason
        config = getattr(denoiser, "config", None)
        image_shaped = not (
            getattr(config, "sample_size", None) is None or getattr(config, "patch_size", None) is None
        )
        if batches_guidance(model, denoiser) and not image_shaped:
            return (
                f"{type(denoiser).__name__} does not return image-shaped (B, C, H, W) output, "
                "which FasterCache's frequency split of the guidance batch needs"
            )
        if not _attention_modules(denoiser):
            return f"{type(denoiser).__name__} has no diffusers attention modules"
        return None

    def make_config(self, model, state):
        from diffusers.hooks import FasterCacheConfig as DiffusersFasterCacheConfig

        cfg = self.config
        weight = cfg.weight
        return DiffusersFasterCacheConfig(
            _unconditional_conditional_input_kwargs_identifiers=batched_inputs(),
            spatial_attention_block_skip_range=cfg.spatial,
            unconditional_batch_skip_range=cfg.uncond,
            attention_weight_callback=lambda _module: weight,
            tensor_format="BCHW",
            is_guidance_distilled=not batches_guidance(model, _unwrap(model.denoiser)),
            current_timestep_callback=self.timestep_source(model, state),
        )

    def apply(self, model):
        import diffusers.utils.logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # "purely experimental" is diffusers' caveat, not ours
        try:
            return super().apply(model)
        finally:
            dlog.set_verbosity(level)
