"""Fidelity: how far a strategy moved the images from the baseline's, image by image.

PSNR and SSIM from torchmetrics, on images in [0, 1] (``data_range=1``), averaged over
images; both agree with scikit-image on the same inputs (``tests/test_fidelity.py``).
An identical image has infinite PSNR, which would make any mean of per-image values
infinite: PSNR is therefore the mean over the images that differ, with the count of
identical images beside it (:func:`psnr_detail`), and ``inf`` only when every image is
identical.
"""

from __future__ import annotations

import math

import torch


def _check(images: torch.Tensor, reference: torch.Tensor) -> None:
    if images.shape != reference.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and reference {tuple(reference.shape)} differ in shape"
        )
    if images.ndim != 4:
        raise ValueError(f"expected NCHW images, got shape {tuple(images.shape)}")


def psnr_detail(images: torch.Tensor, reference: torch.Tensor) -> tuple[float, int, int]:
    """(PSNR in dB, identical images, images): the mean per-image PSNR over the images that
    differ from their reference, ``inf`` when all are identical."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check(images, reference)
    scores = peak_signal_noise_ratio(
        images.double(), reference.double(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    finite = scores[torch.isfinite(scores)]
    identical = int(len(scores) - len(finite))
    value = float(finite.mean()) if len(finite) else math.inf
    return value, identical, int(len(scores))


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean per-image PSNR in dB over the images that differ (``inf`` only when every image
    is identical to its reference); :func:`psnr_detail` also counts the identical ones."""
    return psnr_detail(images, reference)[0]


#: SSIM's Gaussian window (Wang et al. 2004): sigma 1.5, truncated at 3.5 sigma -> 11 taps.
SSIM_SIGMA = 1.5
_SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM over images: Gaussian window (sigma 1.5, 11 taps), K1=0.01, K2=0.03, as in
    Wang et al. 2004 and scikit-image (``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False``).

    The SSIM map comes from torchmetrics; like the reference implementation (and
    scikit-image) it is averaged only where the window lies wholly inside the image, i.e.
    without a 5-pixel border (torchmetrics 1.9 averages the reflect-padded full map, which
    reads higher on small images). Images must therefore be at least 11 pixels a side.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check(images, reference)
    r = _SSIM_RADIUS
    if min(images.shape[-2:]) <= 2 * r:
        raise ValueError(
            f"SSIM needs images of at least {2 * r + 1} pixels a side, got {tuple(images.shape[-2:])}"
        )
    _, full = structural_similarity_index_measure(
        images.double(),
        reference.double(),
        data_range=1.0,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        reduction="none",
        return_full_image=True,
    )
    return float(full[..., r:-r, r:-r].mean(dim=(1, 2, 3)).mean())
