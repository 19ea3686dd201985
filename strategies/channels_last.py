"""channels_last: store the denoiser's 4-D weights (and so its conv activations) as NHWC.

Convolution kernels on GPUs with tensor cores (and oneDNN on CPUs) prefer the channels-last
layout; converting once at load time avoids per-layer transposes. Only convolutions change, so
it matters for UNets; on a transformer only the patch embedding is a convolution, and the
strategy says so in its notes rather than pretending otherwise.

The decoder (a latent model's VAE, all convolutions) is converted too where the model has one,
as diffusers' guides convert ``pipe.unet`` and ``pipe.vae``: decoding a 1024-pixel image is a
large share of a few-step call. A model is refused only when neither has a convolution (the
notes count both).

Only the 2-D convolutions themselves are converted, not the whole module: ``Module.to`` with a
memory format also reaches 5-D tensors (Emu3's video VQ decoder has 3-D convolutions), which
have no channels-last layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from strategies.core.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class Config(StrategyConfig):
    """channels-last takes no parameters."""


_CONV2D = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)


def _conv_layers(module: torch.nn.Module) -> int:
    return sum(isinstance(m, _CONV2D) for m in module.modules())


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Store the weights of every 2-D convolution in ``module`` channels-last; returns it."""
    for m in module.modules():
        if isinstance(m, _CONV2D):
            m.to(memory_format=torch.channels_last)
    return module


class ChannelsLast(Strategy):
    """Convert the denoiser and the decoder to the channels-last (NHWC) memory format."""

    name = "channels-last"
    summary = "store the denoiser's and decoder's conv weights and activations channels-last (NHWC)"
    Config = Config
    stage = Strategy.STAGE_KERNELS
    exclusive_group = "memory format"
    rewrites = ("denoiser", "decoder")

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        if not any(_conv_layers(m) for m in _targets(model).values()):
            return (
                f"{model.name}'s denoiser (and decoder, if any) has no 2-D convolutions: the "
                "memory format changes nothing"
            )
        return None

    def apply(self, model):
        notes = {}
        for role, module in _targets(model).items():
            n = _conv_layers(module)
            if n:
                model.set_component(role, to_channels_last(module))
            notes["conv_layers" if role == "denoiser" else f"{role}_conv_layers"] = n
        model.notes["channels_last"] = notes
        return model


def _targets(model) -> dict[str, torch.nn.Module]:
    """The components converted: the denoiser and, where there is one, the decoder."""
    components = model.components()
    return {role: components[role] for role in ("denoiser", "decoder") if role in components}
