"""Data augmentation for the strategies that train (distillation, pruning recovery).

The article's three augmentations, as pure functions on image batches (float NCHW in [0, 1];
every output is the same shape and stays in [0, 1]):

* :func:`random_crop_resize`: a random box (a fraction of the area, a jittered aspect ratio)
  cut out of each image and resized back to the full size (bilinear);
* :func:`random_color`: per image, a channel gain matrix (mixing channels where there are
  several; a plain gain for grayscale), a contrast change around the image mean and a
  brightness shift;
* :func:`random_noise`: Gaussian noise injected into the pixels.

Each has a deterministic core taking explicit parameters (:func:`crop_resize`,
:func:`color_transform`, :func:`inject_noise`) and a random wrapper drawing them from a
``torch.Generator``. :class:`AugmentConfig` is parsed from a strategy parameter:
``augment=none``, ``augment=all`` or tokens joined with ``/``: ``augment=crop/noise``
(``+`` cannot be used inside a strategy spec: it joins strategies into a stack).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from strategies.core.base import StrategyError

#: The augmentations, in the order they are applied.
AUGMENTATIONS = ("crop", "color", "noise")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and how strongly.

    Attributes:
        crop, color, noise: switch each augmentation on or off.
        p: probability that an augmentation touches a given image (each drawn apart).
        crop_scale: range of the crop's area as a fraction of the image.
        crop_ratio: range of the crop's aspect ratio (width / height).
        brightness: brightness shift drawn from [-brightness, brightness].
        contrast: contrast factor drawn from [1 - contrast, 1 + contrast].
        gain: gain matrix entries: diagonal from [1 - gain, 1 + gain], off-diagonal from
            [-gain / 2, gain / 2] (colour images only).
        noise_std: standard deviation of the injected noise.
    """

    crop: bool = False
    color: bool = False
    noise: bool = False
    p: float = 0.5
    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.1
    contrast: float = 0.2
    gain: float = 0.1
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        for name in ("brightness", "contrast", "gain", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def parse(cls, text: str) -> AugmentConfig:
        """``none``, ``all`` or augmentation names joined by ``/``: ``crop/color/noise``."""
        value = text.strip().lower()
        if value in ("none", "off", ""):
            return cls()
        if value == "all":
            return cls(crop=True, color=True, noise=True)
        tokens = [t.strip() for t in value.replace("+", "/").split("/") if t.strip()]
        unknown = [t for t in tokens if t not in AUGMENTATIONS]
        if unknown:
            raise StrategyError(
                f"unknown augmentation {unknown[0]!r} in {text!r}; use none, all, or "
                f"{', '.join(AUGMENTATIONS)} joined with '/'"
            )
        return cls(**{name: name in tokens for name in AUGMENTATIONS})

    @property
    def enabled(self) -> tuple[str, ...]:
        """The augmentations switched on, in application order."""
        return tuple(name for name in AUGMENTATIONS if getattr(self, name))

    @property
    def spec(self) -> str:
        """The canonical parameter value: ``none`` or e.g. ``crop/noise``."""
        return "/".join(self.enabled) or "none"


# -- deterministic cores ---------------------------------------------------------------------
def crop_resize(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Cut ``boxes`` (N, 4) integer ``(top, left, height, width)`` out of each image and resize
    each crop back to the full size with bilinear interpolation (``align_corners=False``)."""
    _check_images(images)
    n, _, h, w = images.shape
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be ({n}, 4), got {tuple(boxes.shape)}")
    out = torch.empty_like(images)
    for i, (top, left, bh, bw) in enumerate(boxes.tolist()):
        if bh < 1 or bw < 1 or top < 0 or left < 0 or top + bh > h or left + bw > w:
            raise ValueError(f"box {(top, left, bh, bw)} does not fit a {h}x{w} image")
        crop = images[i : i + 1, :, top : top + bh, left : left + bw]
        out[i : i + 1] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0)


def color_transform(
    images: torch.Tensor, gains: torch.Tensor, contrast: torch.Tensor, brightness: torch.Tensor
) -> torch.Tensor:
    """Per image: ``clamp(contrast * (G x - mean(G x)) + mean(G x) + brightness, 0, 1)``.

    Args:
        images: (N, C, H, W) in [0, 1].
        gains: (N, C, C) channel gain matrices (``G``; the identity leaves colours alone).
        contrast: (N,) contrast factors around each image's mean (1: unchanged).
        brightness: (N,) additive shifts (0: unchanged).
    """
    _check_images(images)
    n, c = images.shape[:2]
    if gains.shape != (n, c, c) or contrast.shape != (n,) or brightness.shape != (n,):
        raise ValueError(
            f"expected gains ({n}, {c}, {c}), contrast ({n},), brightness ({n},); got "
            f"{tuple(gains.shape)}, {tuple(contrast.shape)}, {tuple(brightness.shape)}"
        )
    mixed = torch.einsum("nij,njhw->nihw", gains.to(images.dtype), images)
    mean = mixed.mean(dim=(1, 2, 3), keepdim=True)
    out = (mixed - mean) * contrast.view(n, 1, 1, 1) + mean + brightness.view(n, 1, 1, 1)
    return out.clamp_(0.0, 1.0)


def inject_noise(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``clamp(images + std * N(0, 1), 0, 1)`` with noise drawn from ``generator``."""
    _check_images(images)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + std * noise.to(images.device)).clamp_(0.0, 1.0)


# -- random wrappers -------------------------------------------------------------------------
def random_crop_boxes(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.7, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """(N, 4) random ``(top, left, height, width)`` boxes covering ``scale`` of the area."""
    area = torch.empty(n).uniform_(*scale, generator=generator) * height * width
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_ratio.exp()
    bw = (area * aspect).sqrt().round().clamp(1, width).long()
    bh = (area / aspect).sqrt().round().clamp(1, height).long()
    top = (torch.rand(n, generator=generator) * (height - bh + 1).float()).floor().long()
    left = (torch.rand(n, generator=generator) * (width - bw + 1).float()).floor().long()
    return torch.stack([top, left, bh, bw], dim=1)


def random_crop_resize(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.7, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """:func:`crop_resize` with random boxes (see :func:`random_crop_boxes`)."""
    n, _, h, w = images.shape
    return crop_resize(images, random_crop_boxes(n, h, w, generator, scale, ratio))


def random_color(
    images: torch.Tensor,
    generator: torch.Generator,
    brightness: float = 0.1,
    contrast: float = 0.2,
    gain: float = 0.1,
) -> torch.Tensor:
    """:func:`color_transform` with a random gain matrix, contrast and brightness per image."""
    _check_images(images)
    n, c = images.shape[:2]
    gains = torch.empty(n, c, c).uniform_(-gain / 2, gain / 2, generator=generator)
    diagonal = torch.empty(n, c).uniform_(1 - gain, 1 + gain, generator=generator)
    gains = gains * (1 - torch.eye(c)) + torch.diag_embed(diagonal)
    factors = torch.empty(n).uniform_(1 - contrast, 1 + contrast, generator=generator)
    shifts = torch.empty(n).uniform_(-brightness, brightness, generator=generator)
    device = images.device
    return color_transform(images, gains.to(device), factors.to(device), shifts.to(device))


def random_noise(images: torch.Tensor, generator: torch.Generator, std: float = 0.03) -> torch.Tensor:
    """:func:`inject_noise` (kept for symmetry with the other random wrappers)."""
    return inject_noise(images, std, generator)


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the enabled augmentations in order, each to a random ``p`` share of the images."""
    _check_images(images)
    out = images
    for name in config.enabled:
        if name == "crop":
            changed = random_crop_resize(out, generator, config.crop_scale, config.crop_ratio)
        elif name == "color":
            changed = random_color(out, generator, config.brightness, config.contrast, config.gain)
        else:
            changed = random_noise(out, generator, config.noise_std)
        if config.p >= 1.0:
            out = changed
        else:
            mask = (torch.rand(out.shape[0], generator=generator) < config.p).to(out.device)
            out = torch.where(mask.view(-1, 1, 1, 1), changed, out)
    return out


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"expected a float image batch (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
