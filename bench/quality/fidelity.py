"""Fidelity: how far a strategy moved the images from the baseline's, image by image.

PSNR and SSIM from torchmetrics, on images in [0, 1] (``data_range=1``), averaged over
images. Identical images have infinite PSNR; it is reported as ``inf``.
"""

from __future__ import annotations

import torch

from bench.quality.base import METRICS, Metric


def _check(images: torch.Tensor, reference: torch.Tensor) -> None:
    if images.shape != reference.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and reference {tuple(reference.shape)} differ in shape"
        )
    if images.ndim != 4:
        raise ValueError(f"expected NCHW images, got shape {tuple(images.shape)}")


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean per-image PSNR in dB (``inf`` where images are identical)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check(images, reference)
    scores = peak_signal_noise_ratio(
        images.double(), reference.double(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return float(scores.mean())


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, as in Wang et al. 2004)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check(images, reference)
    kernel = min(11, images.shape[-1] - (1 - images.shape[-1] % 2))
    return float(
        structural_similarity_index_measure(
            images.double(), reference.double(), data_range=1.0, kernel_size=kernel
        )
    )


class PSNR(Metric):
    info = METRICS["psnr"]

    def compute(self, images, reference=None, labels=None) -> float:
        return psnr(images, reference)


class SSIM(Metric):
    info = METRICS["ssim"]

    def compute(self, images, reference=None, labels=None) -> float:
        return ssim(images, reference)
