"""What kind of generator a model is: the one value strategies, reports and records agree on."""

from __future__ import annotations

from enum import Enum


class ModelKind(str, Enum):
    """A model's family, as strategies decide what applies to it.

    A ``str`` enum: it compares equal to its value (``ModelKind.UNET == "diffusion-unet"``),
    and records and JSON hold the plain string.
    """

    UNET = "diffusion-unet"
    DIT = "diffusion-dit"
    AUTOREGRESSIVE = "autoregressive"

    def __str__(self) -> str:
        return self.value

    @property
    def is_diffusion(self) -> bool:
        """A denoiser run over steps (UNet or transformer), as opposed to token decoding."""
        return self in (ModelKind.UNET, ModelKind.DIT)


__all__ = ["ModelKind"]
