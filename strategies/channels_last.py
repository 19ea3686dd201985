"""channels_last: store the denoiser's 4-D weights (and so its conv activations) as NHWC.

Convolution kernels on GPUs with tensor cores (and oneDNN on CPUs) prefer the channels-last
layout; converting once at load time avoids per-layer transposes. Only convolutions change, so
it matters for UNets; on a transformer only the patch embedding is a convolution, and the
strategy says so in its notes rather than pretending otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from strategies.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class Config(StrategyConfig):
    """channels-last takes no parameters."""


def _conv_layers(module: torch.nn.Module) -> int:
    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in module.modules())


class ChannelsLast(Strategy):
    """Convert the denoiser to the channels-last (NHWC) memory format."""

    name = "channels-last"
    summary = "store the denoiser's conv weights and activations channels-last (NHWC)"
    Config = Config
    stage = Strategy.STAGE_KERNELS
    exclusive_group = "memory format"

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        if _conv_layers(model.denoiser) == 0:
            return f"{model.name}'s denoiser has no 2-D convolutions: the memory format changes nothing"
        return None

    def apply(self, model):
        denoiser = model.denoiser
        model.set_component("denoiser", denoiser.to(memory_format=torch.channels_last))
        model.notes["channels_last"] = {"conv_layers": _conv_layers(denoiser)}
        return model
