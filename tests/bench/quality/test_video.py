"""Video quality: the temporal PSNR against an independent numpy computation, the layouts the
image metrics read, and what the temporal measure says of freezing and flicker."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.quality.video import (
    frames_as_channels,
    is_video_batch,
    per_frame,
    temporal_psnr,
)


def _numpy_temporal_psnr(videos: np.ndarray, reference: np.ndarray) -> float:
    """Written from the definition: per video, the PSNR (range 2) between the successive
    frame differences of the two videos; the mean over the videos that differ."""
    values = []
    for v, r in zip(videos.astype(np.float64), reference.astype(np.float64), strict=True):
        dv, dr = np.diff(v, axis=0), np.diff(r, axis=0)
        mse = np.mean((dv - dr) ** 2)
        if mse > 0:
            values.append(10 * math.log10(4.0 / mse))
    return float(np.mean(values)) if values else math.inf


def _videos(seed: int, n: int = 4, t: int = 6) -> torch.Tensor:
    return torch.rand(n, t, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_temporal_psnr_matches_an_independent_numpy_computation():
    ref = _videos(0)
    noisy = (ref + 0.05 * _videos(1)).clamp(0, 1)
    noisy[2] = ref[2]  # one identical video: left out of the mean
    value, details = temporal_psnr(noisy, ref)
    assert value == pytest.approx(_numpy_temporal_psnr(noisy.numpy(), ref.numpy()), rel=1e-9)
    assert details["identical_videos"] == 1 and details["videos"] == 4
    assert temporal_psnr(ref, ref.clone())[0] == math.inf


def test_a_constant_offset_has_no_temporal_error_but_freezing_does():
    ref = _videos(2)
    shifted = ref * 0.5 + 0.25  # each frame changes, how frames change scales by 0.5
    brighter = (ref + 0.1).clamp(0, 1)
    frozen = ref[:, :1].expand_as(ref).clone()  # the first frame, held: no motion
    _, frozen_details = temporal_psnr(frozen, ref)
    assert frozen_details["motion_ratio"] == 0.0
    assert temporal_psnr(shifted, ref)[1]["motion_ratio"] == pytest.approx(0.5, rel=1e-6)
    # A still offset of every frame leaves the frame-to-frame changes nearly as they were.
    assert temporal_psnr(brighter, ref)[0] > temporal_psnr(frozen, ref)[0]


def test_flicker_raises_the_motion_ratio_above_one():
    ref = torch.full((3, 8, 1, 4, 4), 0.5)
    ref += torch.linspace(0, 0.2, 8).view(1, 8, 1, 1, 1)  # slow smooth change
    flicker = ref.clone()
    flicker[:, 1::2] += 0.1  # every other frame jumps
    value, details = temporal_psnr(flicker, ref)
    assert details["motion_ratio"] > 1.5
    assert math.isfinite(value)


def test_layouts_for_the_image_metrics():
    v = _videos(3, n=2, t=5)
    assert is_video_batch(v) and not is_video_batch(v[0]) and not is_video_batch("x")
    assert per_frame(v).shape == (10, 1, 8, 8)
    torch.testing.assert_close(per_frame(v)[6], v[1, 1])
    assert frames_as_channels(v).shape == (2, 5, 8, 8)
    torch.testing.assert_close(frames_as_channels(v)[1, 3], v[1, 3, 0])
    images = torch.rand(3, 1, 8, 8)
    assert per_frame(images) is images and frames_as_channels(images) is images


def test_bad_shapes_are_refused_in_words():
    with pytest.raises(ValueError, match="two batches of videos"):
        temporal_psnr(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="of one shape"):
        temporal_psnr(_videos(0, t=4), _videos(0, t=5))
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_psnr(_videos(0, t=1), _videos(1, t=1))
