"""What the diffusers cache strategies share: putting diffusers' hooks on a denoiser (through
``enable_cache`` or the matching public ``apply_*`` function), the call-context hook that
stands in for a pipeline without cache contexts, what ``supports`` checks, and the strategy
base class that turns a technique's config into diffusers' config and records what it did.

diffusers is imported on first use: the registry imports these modules to list the
strategies, and listing should not load diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from bench.core.kinds import ModelKind
from strategies.core.base import Strategy

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

_HOOK_CONTEXT = "accelbench_cache_context"

#: diffusers cache config class -> name of its ``apply_*`` function in ``diffusers.hooks``.
_APPLY = {
    "FirstBlockCacheConfig": "apply_first_block_cache",
    "TaylorSeerCacheConfig": "apply_taylorseer_cache",
    "PyramidAttentionBroadcastConfig": "apply_pyramid_attention_broadcast",
    "FasterCacheConfig": "apply_faster_cache",
    "MagCacheConfig": "apply_mag_cache",
    "SeaCacheConfig": "apply_sea_cache",
}


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module a ``torch.compile`` wrapper holds (or ``module`` itself)."""
    return getattr(module, "_orig_mod", module)


# -- what diffusers' hooks work on -------------------------------------------------------
# diffusers exports no public name for the module classes its cache hooks attach to, the
# names of the block lists they walk, or the registry of block layouts FirstBlockCache
# reads: they live in its private ``diffusers.hooks._common`` and ``._helpers``. ``supports``
# must agree with what the ``apply_*`` functions will hook, so these three checks read
# diffusers' own private tables, here and nowhere else.
def attention_modules(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The (name, module) pairs of ``denoiser`` that diffusers' attention hooks attach to."""
    from diffusers.hooks._common import _ATTENTION_CLASSES  # private: see above

    return [(n, m) for n, m in denoiser.named_modules() if isinstance(m, _ATTENTION_CLASSES)]


def block_lists(denoiser: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    """The lists of transformer blocks of ``denoiser`` diffusers' block hooks walk."""
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS  # private: see above

    return [
        (name, child)
        for name, child in denoiser.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
    ]


def unregistered_block(blocks: list[torch.nn.Module]) -> str | None:
    """Why diffusers' ``TransformerBlockRegistry`` cannot serve the block hooks on the first
    block it fails (the layout is unknown, or the hidden states argument the registry names
    is not in the block's ``forward``), or None."""
    import inspect

    from diffusers.hooks._helpers import TransformerBlockRegistry  # private: see above

    for block in blocks:
        name = type(block).__name__
        try:
            metadata = TransformerBlockRegistry.get(type(block))
        except ValueError:
            return f"{name} is not in diffusers' TransformerBlockRegistry"
        argument = getattr(metadata, "hidden_states_argument_name", "hidden_states")
        arguments = list(inspect.signature(type(block).forward).parameters)[1:]
        # diffusers' first-block hook asks for "hidden_states" by name whatever the entry says.
        for wanted in dict.fromkeys((argument, "hidden_states")):
            if wanted not in arguments:
                return (f"{name}.forward takes its hidden states as {arguments[0]!r}, and "
                        f"diffusers' TransformerBlockRegistry entry for it names {wanted!r}")
    return None


def block_layout_reason(denoiser: torch.nn.Module, technique: str) -> str | None:
    """Why ``technique``'s block hooks cannot work on ``denoiser`` (fewer than 2 transformer
    blocks, or a block layout diffusers' registry does not know), or None."""
    blocks = [b for _, lst in block_lists(denoiser) for b in lst]
    if len(blocks) < 2:
        return (f"{type(denoiser).__name__} has {len(blocks)} transformer block(s); "
                f"{technique} needs 2 or more")
    unknown = unregistered_block(blocks)
    if unknown:
        return f"{unknown}, which {technique}'s hooks read"
    return None


def joined_streams_reason(denoiser: torch.nn.Module, technique: str) -> str | None:
    """Why ``technique``, which caches the residual of the whole block stack (last block's
    output minus first block's input), cannot on ``denoiser``: its blocks join the text and
    image streams midway (FLUX.2's single-stream blocks run on the two concatenated and
    return one sequence), so the stack's output is not the shape of its input; or None.
    FLUX.1's single-stream blocks keep the two streams apart and are fine."""
    from diffusers.hooks._helpers import TransformerBlockRegistry  # private: see above

    separate = []
    for name, blocks in block_lists(denoiser):
        try:
            metadata = TransformerBlockRegistry.get(type(blocks[0]))
        except ValueError:
            return None  # block_layout_reason says why
        separate.append((name, metadata.return_encoder_hidden_states_index is not None))
    if len(separate) > 1 and separate[0][1] and not separate[-1][1]:
        return (f"{type(denoiser).__name__}'s {separate[-1][0]} run on the text and image "
                f"tokens joined into one sequence after its {separate[0][0]}, so the block "
                f"stack's output is not the shape of its input and {technique} has no residual "
                "of the stack to reuse")
    return None


def stack_residual_reason(denoiser: torch.nn.Module, technique: str) -> str | None:
    """Why ``technique``, which hooks the block stack to reuse its residual (FirstBlockCache,
    SeaCache), cannot on ``denoiser``: :func:`block_layout_reason`, then
    :func:`joined_streams_reason`; or None."""
    return block_layout_reason(denoiser, technique) or joined_streams_reason(denoiser, technique)


def text_dropping_blocks(denoiser: torch.nn.Module) -> list[str]:
    """Blocks whose output has no text stream (SD3's last joint block, ``context_pre_only``):
    they return None where the other blocks return the encoder hidden states."""
    return [
        f"{name}.{i}"
        for name, blocks in block_lists(denoiser)
        for i, block in enumerate(blocks)
        if getattr(block, "context_pre_only", False)
    ]


# -- putting the hooks on ----------------------------------------------------------------
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


def register_hook(module: torch.nn.Module, hook: Any, name: str) -> Any:
    """Register the diffusers ``ModelHook`` ``hook`` on ``module`` under ``name``; returns the
    module's hook registry."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(hook, name)
    return registry


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


@torch.compiler.disable
def _context_open(module: torch.nn.Module) -> bool:
    """True when the caller (the pipeline's denoising loop) has opened a diffusers cache
    context on ``module``'s hooks. Pipelines differ: FLUX's opens one per call, FLUX.2
    [dev]'s none, though its transformer has the mixin; diffusers exposes no accessor, so
    the hooks' state managers are read (private, as above)."""
    from diffusers.hooks.hooks import HookRegistry, StateManager

    registry = HookRegistry.check_if_exists_or_initialize(module)
    for child in (registry, *registry._get_child_registries()):
        for hook in child.hooks.values():
            for value in vars(hook).values():
                if isinstance(value, StateManager) and value._context is not None:
                    return True
    return False


def _call_context_hook(state: CallState) -> Any:
    """A diffusers ``ModelHook`` for the denoiser: records each call's timestep, resets the
    cache hooks' state when a new generation starts and, where the pipeline opened no cache
    context for the call, runs it in the ``"cond_uncond"`` one (without a context the
    stateful hooks run fail-open: nothing is ever cached)."""
    from diffusers.hooks import ModelHook
    from diffusers.models.cache_utils import CacheMixin

    class CallContextHook(ModelHook):
        def __init__(self) -> None:
            super().__init__()
            self.state = state

        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            _begin_call(module, self.state, timestep)
            if _context_open(module):
                return self.fn_ref.original_forward(*args, **kwargs)
            with CacheMixin.cache_context(module, "cond_uncond", timestep=self.state.timestep):
                return self.fn_ref.original_forward(*args, **kwargs)

    return CallContextHook()


def enable(denoiser: torch.nn.Module, config: Any, state: CallState | None) -> None:
    """Put diffusers' cache hooks for ``config`` on ``denoiser``: ``enable_cache`` where it has
    ``CacheMixin``, else the same ``apply_*`` function; then, with a ``state``, the
    call-context hook (which also opens a cache context for calls the pipeline opened none
    for: always where there is no mixin, since then no pipeline can)."""
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
        registry.register_hook(_call_context_hook(state), _HOOK_CONTEXT)


def pipeline_timestep(model: ReferenceModel) -> bool:
    """True when the model's pipeline reports the current timestep (``current_timestep``)."""
    return model.pipe is not None and hasattr(type(model.pipe), "current_timestep")


# -- the strategies ----------------------------------------------------------------------
class DiffusersCache(Strategy):
    """Common checks and application of one diffusers cache hook.

    A subclass names its diffusers config class (:attr:`diffusers_config`), builds it in
    :meth:`make_config` and adds its own layout checks in :meth:`_supports_layout`.
    """

    stage = Strategy.STAGE_CACHING
    exclusive_group = "feature cache"
    #: Name of the technique's config class in ``diffusers.hooks``.
    diffusers_config: ClassVar[str]

    def supports(self, model: ReferenceModel) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        import diffusers
        import diffusers.hooks

        if not hasattr(diffusers.hooks, self.diffusers_config):
            return f"diffusers {diffusers.__version__} has no {self.diffusers_config}"
        denoiser = unwrap(model.denoiser)
        if not has_cache_mixin(denoiser) and not block_lists(denoiser):
            hint = " (for a UNet use deepcache)" if model.kind == ModelKind.UNET else ""
            return (
                f"{type(denoiser).__name__} has neither diffusers' CacheMixin nor lists of "
                f"transformer blocks, which diffusers' cache hooks work on{hint}"
            )
        if cache_enabled(denoiser):
            return f"{type(denoiser).__name__} already has a cache enabled"
        return self._supports_layout(model, denoiser)

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        return None

    def _needs_timestep(self, model: ReferenceModel) -> str | None:
        """Why a technique on a timestep window (PAB, FasterCache) has no timesteps, or None."""
        if model.pipe is None:
            return f"{self.name} needs the diffusion pipeline's timesteps; {model.name} has none"
        return None

    def _one_state_per_call(self, model: ReferenceModel) -> str | None:
        """Why a technique whose hooks keep one state across calls (PAB, FasterCache) cannot
        run where the pipeline calls the denoiser twice per step, or None.

        True classifier-free guidance (Qwen-Image's ``true_cfg_scale`` with a negative prompt,
        FLUX's where one is given) runs the conditional and the unconditional pass as two
        denoiser calls, told apart only by diffusers' cache contexts; these hooks ignore the
        contexts, so one pass's cached attention would be reused in the other (and where the
        two texts differ in length, the shapes do not even match)."""
        args = getattr(model, "call_args", None) or {}
        negative = args.get("negative_prompt") is not None or "negative_prompt_embeds" in args
        if float(args.get("true_cfg_scale", 1.0) or 1.0) > 1.0 and negative:
            return (f"{type(model.pipe).__name__} runs true classifier-free guidance as two "
                    f"denoiser calls per step (conditional, then unconditional); diffusers' "
                    f"{self.diffusers_config} hooks keep one state for both, so one pass's "
                    "cached attention would be reused in the other")
        return None

    @staticmethod
    def _no_attention(denoiser: torch.nn.Module) -> str | None:
        """Why an attention-reusing technique finds nothing to hook in ``denoiser``, or None."""
        if not attention_modules(denoiser):
            return f"{type(denoiser).__name__} has no diffusers attention modules"
        return None

    def make_config(self, model: ReferenceModel, state: CallState | None) -> Any:
        """The diffusers config object for ``model`` (``state``: see :meth:`timestep_source`)."""
        raise NotImplementedError

    @staticmethod
    def timestep_source(model: ReferenceModel, state: CallState | None) -> RecordedTimestep:
        """A callable returning the current timestep: the pipeline's ``current_timestep``
        where it reports one (``state`` is None then), else the timestep the call-context
        hook recorded for the running denoiser call."""
        return RecordedTimestep(state=state, pipe=model.pipe if state is None else None)

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        denoiser = unwrap(model.denoiser)
        # The pipelines of mixin-less transformers open no cache context and report no
        # timestep, and some with the mixin open none either (FLUX.2 [dev]'s): the
        # call-context hook (and its state) stands in for them wherever they do not.
        mixin = has_cache_mixin(denoiser)
        pipeline_clock = mixin and pipeline_timestep(model)
        state = CallState()
        config = self.make_config(model, None if pipeline_clock else state)
        enable(denoiser, config, state)
        model.notes[self.name] = {
            "diffusers_config": repr(config).replace("\n", ""),
            "hooks": "enable_cache" if mixin else "diffusers.hooks apply_*",
            "context": ("the pipeline's, else the call-context hook's (cond_uncond)" if mixin
                        else "call-context hook (cond_uncond)"),
        }
        denoiser._accelbench_cache_state = state  # for inspection (tests); not saved
        return model
