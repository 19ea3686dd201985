"""PSNR and SSIM agree with scikit-image, an independent implementation, on the same inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.core.metrics import METRICS
from bench.quality.fidelity import psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")

SHAPES = [(8, 1, 16, 16), (4, 3, 32, 32), (3, 3, 17, 23), (2, 1, 11, 11), (2, 3, 64, 48)]


def _pair(shape, noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(shape, generator=g, dtype=torch.float64)
    images = (reference + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return images, reference


def _sk_ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    return float(
        np.mean(
            [
                skimage_metrics.structural_similarity(
                    im.numpy(),
                    ref.numpy(),
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=1,
                    channel_axis=0,
                )
                for im, ref in zip(images, reference, strict=True)
            ]
        )
    )


def _sk_psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    return float(
        np.mean(
            [
                skimage_metrics.peak_signal_noise_ratio(ref.numpy(), im.numpy(), data_range=1)
                for im, ref in zip(images, reference, strict=True)
            ]
        )
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ssim_matches_skimage(shape, noise):
    images, reference = _pair(shape, noise)
    assert ssim(images, reference) == pytest.approx(_sk_ssim(images, reference), abs=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_psnr_matches_skimage(shape, noise):
    images, reference = _pair(shape, noise)
    # torchmetrics divides by log(10) computed in float32: agreement to ~1e-7 relative.
    assert psnr(images, reference) == pytest.approx(_sk_psnr(images, reference), rel=1e-6)


def test_float32_inputs_agree_with_float64():
    images, reference = _pair((4, 1, 16, 16), 0.1)
    assert ssim(images.float(), reference.float()) == pytest.approx(
        _sk_ssim(images.float().double(), reference.float().double()), abs=1e-9
    )


def test_on_real_digits_with_noise():
    """The embedded models' own images: real 16x16 digits against a noisy copy."""
    from bench.models.digits.data import load_split

    real = torch.from_numpy(load_split("heldout").images[:32].copy()).double()
    g = torch.Generator().manual_seed(1)
    noisy = (real + 0.05 * torch.randn(real.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert ssim(noisy, real) == pytest.approx(_sk_ssim(noisy, real), abs=1e-9)
    assert psnr(noisy, real) == pytest.approx(_sk_psnr(noisy, real), rel=1e-6)


def test_identical_images():
    images, _ = _pair((3, 1, 16, 16), 0.0)
    assert math.isinf(psnr(images, images))
    assert ssim(images, images) == pytest.approx(1.0, abs=1e-12)


def test_one_identical_image_does_not_make_psnr_infinite():
    """Three images, one identical to its reference: PSNR is the mean of the other two (the
    old mean of all three was inf, which the matrix printed as "exact"); the count says 1."""
    from bench.quality.fidelity import psnr_detail

    images, reference = _pair((3, 1, 16, 16), 0.1)
    images[1] = reference[1]
    value, identical, n = psnr_detail(images, reference)
    assert math.isfinite(value) and (identical, n) == (1, 3)
    assert value == pytest.approx(_sk_psnr(images[[0, 2]], reference[[0, 2]]), rel=1e-6)
    assert psnr(images, reference) == value


def test_matrix_says_exact_only_when_every_image_is_identical():
    from bench.sweep.matrix import Cell

    partial = Cell("m", "s", "ok", speedup=1.5, psnr=31.2, identical=(1, 16))
    assert "exact" not in partial.short() and "31 dB (1/16 identical)" in partial.short()
    assert "exact" in Cell("m", "s", "ok", speedup=1.5, psnr=math.inf, identical=(16, 16)).short()


def test_more_noise_scores_lower():
    _, reference = _pair((4, 1, 16, 16), 0.0)
    scores = [ssim(_pair((4, 1, 16, 16), s)[0], reference) for s in (0.01, 0.05, 0.2)]
    assert scores == sorted(scores, reverse=True)


def test_bad_inputs():
    a = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(a, torch.rand(2, 1, 16, 15))
    with pytest.raises(ValueError, match="NCHW"):
        psnr(a[0], a[0])
    with pytest.raises(ValueError, match="at least 11 pixels"):
        ssim(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))


def test_fidelity_metrics_declare_direction():
    assert METRICS["psnr"].higher_is_better and METRICS["psnr"].unit == "dB"
    assert METRICS["ssim"].higher_is_better
