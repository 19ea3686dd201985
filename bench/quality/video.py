"""Video quality: videos ``(N, T, C, H, W)`` in the shapes the image metrics read, and the
temporal measure that exposes flicker.

* :func:`per_frame` makes every frame an image, so PSNR and SSIM against the baseline are
  per-frame figures (the mean over all frames of all videos).
* :func:`frames_as_channels` makes every video one "image" whose channels are its frames: the
  layout in which a video domain's classifier and feature extractor take whole clips (FID/KID
  over clip features, the noise floor), with no change to the distribution code.
* :func:`temporal_psnr` compares how each video changes from frame to frame with how the
  baseline's does: the PSNR of the frame differences (range [-1, 1], so ``data_range`` 2).
  A cache that reuses a stale step makes frames jump or freeze where the baseline moves
  smoothly; that lowers the temporal PSNR even when each frame on its own looks close. The
  motion ratio beside it (mean absolute frame-to-frame change over the baseline's) says which:
  above 1 is flicker, below 1 frozen motion.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: The data range of a difference of two frames in [0, 1].
DIFFERENCE_RANGE = 2.0


def is_video_batch(x: Any) -> bool:
    """True for a batch of videos ``(N, T, C, H, W)``."""
    return isinstance(x, torch.Tensor) and x.ndim == 5


def per_frame(videos: torch.Tensor) -> torch.Tensor:
    """Videos (N, T, C, H, W) as N*T images (NCHW); images are returned as they are."""
    return videos.flatten(0, 1) if is_video_batch(videos) else videos


def frames_as_channels(videos: torch.Tensor) -> torch.Tensor:
    """Videos (N, T, C, H, W) as N "images" of T*C channels; images are returned as they
    are."""
    return videos.flatten(1, 2) if is_video_batch(videos) else videos


def _check(videos: torch.Tensor, reference: torch.Tensor) -> None:
    if not is_video_batch(videos) or videos.shape != reference.shape:
        raise ValueError(f"expected two batches of videos (N, T, C, H, W) of one shape, got "
                         f"{tuple(videos.shape)} and {tuple(reference.shape)}")
    if videos.shape[1] < 2:
        raise ValueError("a temporal measure needs videos of at least 2 frames")


def temporal_psnr(videos: torch.Tensor, reference: torch.Tensor) -> tuple[float, dict[str, Any]]:
    """PSNR (dB) of each video's frame-to-frame differences against the baseline's, averaged
    over the videos whose differences are not identical (``inf`` when all are), and its
    details: identical videos, videos, and the motion ratio."""
    _check(videos, reference)
    d = (videos[:, 1:].double() - videos[:, :-1].double())
    d_ref = (reference[:, 1:].double() - reference[:, :-1].double())
    mse = (d - d_ref).pow(2).flatten(1).mean(dim=1)
    differs = mse > 0
    scores = 10 * torch.log10(DIFFERENCE_RANGE**2 / mse[differs])
    value = float(scores.mean()) if len(scores) else math.inf
    base_motion = float(d_ref.abs().mean())
    ratio = float(d.abs().mean()) / base_motion if base_motion > 0 else None
    details = {
        "identical_videos": int((~differs).sum()),
        "videos": len(videos),
        "motion_ratio": ratio,
        "mean_over": "videos whose frame-to-frame changes differ from the baseline's",
        "data_range": DIFFERENCE_RANGE,
    }
    return value, details


__all__ = ["DIFFERENCE_RANGE", "frames_as_channels", "is_video_batch", "per_frame",
           "temporal_psnr"]
