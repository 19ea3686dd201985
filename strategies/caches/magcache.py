"""``magcache``: diffusers' MagCache (Ma et al. 2025).

Skip the transformer blocks (reuse the last residual, output = input + residual) while the
accumulated error predicted from the magnitude ratios of successive residuals stays under
``threshold``. The ratios are per model and per scheduler, so the strategy calibrates them
with diffusers' own calibration mode (``MagCacheConfig(calibrate=True)``: one full
generation that records ``mean(|r_t| / |r_{t-1}|)`` per step) on the first apply, and records
that one-off cost in ``model.notes["cold"]`` as the training strategies do
(:func:`strategies.core.training.record_cold`). Calibrated ratios are cached in this process
only (:data:`_RATIOS`, keyed by the model's fingerprint, which covers its source, the
strategies applied before and the call arguments, plus the step count): nothing is written to
disk, so a new process calibrates again. The schedule follows fixed ratios once calibrated,
but those ratios come from the model's activations (``depends_on_activations``).
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.caches.common import (
    _HOOK_CONTEXT,
    CallState,
    DiffusersCache,
    block_layout_reason,
    block_lists,
    enable,
    has_cache_mixin,
    unwrap,
)
from strategies.core.base import StrategyConfig, param
from strategies.core.training import record_cold

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

#: Calibrated magnitude ratios of this process: (model fingerprint, steps) -> ratios.
_RATIOS: dict[tuple[str, int], list[float]] = {}
#: The seed of the calibration generation (of the model's first benchmark prompt).
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class MagCacheConfig(StrategyConfig):
    """MagCache's knobs (diffusers' defaults)."""

    threshold: float = param(
        0.06,
        "skip while the accumulated magnitude error stays below this (0 never skips)",
        low=0.0,
        high=10.0,
    )
    max_skip: int = param(
        3, "most consecutive steps skipped", low=0, high=1000, below_model="steps"
    )
    retention: float = param(0.2, "fraction of the first steps always computed", low=0.0, high=1.0)

    always_show = ("threshold",)


class MagCache(DiffusersCache):
    """diffusers' MagCache: skip the blocks while the calibrated residual magnitudes say so."""

    name = "magcache"
    summary = (
        "diffusers MagCache on a transformer, ratios calibrated once per model (threshold=0.06)"
    )
    Config = MagCacheConfig
    diffusers_config = "MagCacheConfig"
    #: The calibrated ratios (hence the steps skipped) come from the model's activations.
    depends_on_activations = True

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        reason = block_layout_reason(denoiser, "MagCache")
        if reason:
            return reason
        if not model.steps:
            return f"MagCache needs the number of denoising steps; {model.name} has none in its call arguments"
        return None

    def make_config(self, model: ReferenceModel, state: CallState | None) -> Any:
        from diffusers.hooks import MagCacheConfig as DiffusersMagCacheConfig

        cfg = self.config
        return DiffusersMagCacheConfig(
            threshold=cfg.threshold,
            max_skip_steps=cfg.max_skip,
            retention_ratio=cfg.retention,
            num_inference_steps=int(model.steps),
            mag_ratios=torch.tensor(self._ratios),
        )

    def calibrate(self, model: ReferenceModel) -> tuple[list[float], float, bool]:
        """The model's magnitude ratios: (ratios, seconds spent, whether they were cached)."""
        key = (model.fingerprint(), int(model.steps))
        if key in _RATIOS:
            return _RATIOS[key], 0.0, True
        from diffusers.hooks import HookRegistry
        from diffusers.hooks import MagCacheConfig as DiffusersMagCacheConfig

        denoiser = unwrap(model.denoiser)
        state = None if has_cache_mixin(denoiser) and model.pipe is not None else CallState()
        config = DiffusersMagCacheConfig(calibrate=True, num_inference_steps=int(model.steps))
        enable(denoiser, config, state)
        tail = block_lists(denoiser)[-1][1][-1]
        hook = HookRegistry.check_if_exists_or_initialize(tail).get_hook("mag_cache_block_hook")
        ratios: list[float] = []
        step = hook._perform_calibration_step

        def recording(st: Any, residual: torch.Tensor) -> None:
            step(st, residual)
            if len(ratios) < int(model.steps):  # the first generation only
                ratios.append(float(st.calibration_ratios[-1]))

        hook._perform_calibration_step = recording  # called by the tail hook itself
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # diffusers prints the ratios
                prompts, _ = model.prompts(1)
                model.generate(prompts, [CALIBRATION_SEED])
        finally:
            seconds = time.perf_counter() - start
            self._remove(denoiser)
        if not ratios:
            raise RuntimeError(f"MagCache calibration on {model.name} recorded no ratios")
        _RATIOS[key] = ratios
        return ratios, seconds, False

    @staticmethod
    def _remove(denoiser: torch.nn.Module) -> None:
        """Take the calibration pass's hooks off again."""
        from diffusers.hooks import HookRegistry

        registry = HookRegistry.check_if_exists_or_initialize(denoiser)
        if registry.get_hook(_HOOK_CONTEXT) is not None:
            registry.remove_hook(_HOOK_CONTEXT, recurse=False)
        if has_cache_mixin(denoiser):
            denoiser.disable_cache()
        else:
            registry.remove_hook("mag_cache_leader_block_hook", recurse=True)
            registry.remove_hook("mag_cache_block_hook", recurse=True)
        denoiser._accelbench_cache = None

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        """Calibrate (or reuse the ratios of this process), then put MagCache on."""
        ratios, seconds, hit = self.calibrate(model)
        self._ratios = ratios
        model = super().apply(model)
        record_cold(model, seconds, hit)
        model.notes[self.name].update(
            {
                "calibration_s": seconds,
                "calibration_cached": hit,
                "mag_ratios": [round(r, 5) for r in ratios],
            }
        )
        return model
