"""Augmentations: each changes the batch as specified and keeps shapes and the [0, 1] range.

References: skimage's bilinear resize for crop-and-resize, a NumPy loop for the colour
transform, sample statistics for the injected noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies.core.augment import (
    AugmentConfig,
    augment,
    color_transform,
    crop_resize,
    inject_noise,
    random_color,
    random_crop_boxes,
    random_crop_resize,
    random_noise,
)


def _batch(n: int = 6, c: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "enabled"),
    [
        ("none", ()),
        ("all", ("crop", "color", "noise")),
        ("crop/color/noise", ("crop", "color", "noise")),
        ("noise/crop", ("crop", "noise")),
        ("color", ("color",)),
    ],
)
def test_parse(text: str, enabled: tuple[str, ...]) -> None:
    config = AugmentConfig.parse(text)
    assert config.enabled == enabled
    assert AugmentConfig.parse(config.spec).enabled == enabled


def test_parse_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        AugmentConfig.parse("crop/blur")


def test_config_checks_ranges() -> None:
    with pytest.raises(ValueError, match="p must be"):
        AugmentConfig(crop=True, p=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop=True, crop_scale=(0.0, 1.0))


# -- random crop with resize back ---------------------------------------------------------
def test_crop_resize_matches_skimage() -> None:
    from skimage.transform import resize

    images = _batch(3)
    boxes = torch.tensor([[0, 0, 16, 16], [3, 2, 11, 10], [5, 6, 8, 9]])
    out = crop_resize(images, boxes)
    assert out.shape == images.shape
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        crop = images[i, 0, top : top + h, left : left + w].double().numpy()
        ref = resize(crop, (16, 16), order=1, mode="edge", anti_aliasing=False)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5)
    # The full-image box is the identity.
    torch.testing.assert_close(out[0], images[0])


def test_crop_boxes_fit_and_cover_the_requested_area() -> None:
    boxes = random_crop_boxes(500, 16, 16, _gen(), scale=(0.5, 0.9), ratio=(0.75, 4 / 3))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 16).all() and (left + w <= 16).all()
    area = (h * w).float() / 256
    # Rounding to whole pixels and clamping to the image move the area a little.
    assert area.min() > 0.35 and area.max() <= 1.0
    assert 0.55 < area.mean() < 0.8


def test_random_crop_changes_images_keeps_shape_and_range() -> None:
    images = _batch()
    out = random_crop_resize(images, _gen(), scale=(0.5, 0.7))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    # Same generator seed, same result.
    torch.testing.assert_close(out, random_crop_resize(images, _gen(), scale=(0.5, 0.7)))


# -- colour transform -----------------------------------------------------------------------
def test_color_transform_matches_numpy() -> None:
    images = _batch(4, c=3)
    g = _gen()
    gains = torch.eye(3).expand(4, 3, 3) + 0.2 * torch.rand(4, 3, 3, generator=g) - 0.1
    contrast = torch.tensor([1.0, 0.7, 1.3, 1.1])
    brightness = torch.tensor([0.0, 0.1, -0.1, 0.05])
    out = color_transform(images, gains, contrast, brightness)
    for i in range(4):
        x = images[i].double().numpy()
        mixed = np.einsum("ij,jhw->ihw", gains[i].double().numpy(), x)
        mean = mixed.mean()
        ref = np.clip((mixed - mean) * float(contrast[i]) + mean + float(brightness[i]), 0, 1)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)


def test_color_identity_and_brightness() -> None:
    images = _batch(2) * 0.8  # room for a shift without clamping
    eye = torch.eye(1).expand(2, 1, 1)
    same = color_transform(images, eye, torch.ones(2), torch.zeros(2))
    torch.testing.assert_close(same, images)
    shifted = color_transform(images, eye, torch.ones(2), torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(shifted - images, torch.tensor([0.1, 0.2]).view(2, 1, 1, 1).expand_as(images))


@pytest.mark.parametrize("channels", [1, 3])
def test_random_color_changes_images_keeps_shape_and_range(channels: int) -> None:
    images = _batch(c=channels)
    out = random_color(images, _gen(), brightness=0.2, contrast=0.3, gain=0.2)
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    per_image_mean_shift = (out - images).mean(dim=(1, 2, 3)).abs()
    assert (per_image_mean_shift > 1e-4).all()


# -- noise injection ------------------------------------------------------------------------
def test_noise_has_the_requested_statistics() -> None:
    images = torch.full((64, 1, 16, 16), 0.5)
    out = inject_noise(images, 0.05, _gen())
    diff = out - images
    assert out.shape == images.shape
    assert abs(float(diff.mean())) < 0.002
    assert abs(float(diff.std()) - 0.05) < 0.002
    torch.testing.assert_close(out, random_noise(images, _gen(), std=0.05))


def test_noise_is_clamped() -> None:
    images = torch.cat([torch.zeros(2, 1, 16, 16), torch.ones(2, 1, 16, 16)])
    out = inject_noise(images, 0.5, _gen())
    assert out.min() >= 0 and out.max() <= 1


# -- the pipeline of augmentations -----------------------------------------------------------
def test_none_leaves_batch_alone() -> None:
    images = _batch()
    assert torch.equal(augment(images, AugmentConfig.parse("none"), _gen()), images)


def test_probability_selects_images() -> None:
    images = _batch(200)
    config = AugmentConfig(noise=True, p=0.3)
    out = augment(images, config, _gen())
    changed = (out != images).flatten(1).any(dim=1).float().mean()
    assert 0.2 < float(changed) < 0.4
    assert torch.equal(augment(images, AugmentConfig(noise=True, p=0.0), _gen()), images)


@pytest.mark.parametrize("text", ["crop", "color", "noise", "all"])
def test_each_switch_changes_every_image_at_p1(text: str) -> None:
    images = _batch(8)
    config = AugmentConfig(**{**AugmentConfig.parse(text).__dict__, "p": 1.0,
                              "crop_scale": (0.5, 0.8)})
    out = augment(images, config, _gen())
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
    assert (out != images).flatten(1).any(dim=1).all()


def test_rejects_non_image_input() -> None:
    with pytest.raises(ValueError, match="float image batch"):
        augment(torch.zeros(4, 16, 16), AugmentConfig.parse("all"), _gen())
