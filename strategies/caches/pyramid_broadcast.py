"""``pab``: diffusers' Pyramid Attention Broadcast (Zhao et al. 2024).

Inside a timestep window, reuse self-attention outputs for ``spatial`` steps and
cross-attention outputs for ``cross`` steps (cross-attention changes least, so it is broadcast
furthest). A fixed schedule: the work saved is the same for any weights. See
:mod:`strategies.caches`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.caches.common import CallState, DiffusersCache
from strategies.core.base import StrategyConfig, StrategyError, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel


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
            raise StrategyError(f"t_low={self.t_low} must be below t_high={self.t_high}")


class PAB(DiffusersCache):
    """diffusers' Pyramid Attention Broadcast."""

    name = "pab"
    summary = "diffusers Pyramid Attention Broadcast on a transformer (spatial=2, cross=6)"
    Config = PABConfig
    diffusers_config = "PyramidAttentionBroadcastConfig"

    def _supports_layout(self, model: ReferenceModel, denoiser: torch.nn.Module) -> str | None:
        return (self._needs_timestep(model) or self._one_state_per_call(model)
                or self._no_attention(denoiser))

    def make_config(self, model: ReferenceModel, state: CallState | None) -> Any:
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

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        if self.config.spatial == 1 and self.config.cross == 1:
            # diffusers would fall back to spatial=2: keep "1" meaning "never reuse".
            model.notes[self.name] = {"note": "spatial=1 and cross=1: nothing is broadcast"}
            return model
        return super().apply(model)
