"""``digits-video``: the embedded text-to-video model, a Wan DiT on moving handwritten digits.

A :class:`~bench.models.digits.video_pipeline.DigitsVideoPipeline` (diffusers'
``WanTransformer3DModel``, patch (1, 2, 2) on 8 frames of 16 x 16 = 512 tokens, a 2-layer CLIP
text encoder, DDIM with v-prediction) trained on clips of the ``generator`` split's digits
(:mod:`~bench.models.digits.video_data`) with
``python -m bench.models.digits.training.train_digits_video``; weights ship as safetensors in
``bench/models/weights/digits-video/``.

The shipped weights are undertrained (see the training script): per-frame adherence 0.47
and motion correct in 0.16 of videos at the defaults, against 0.99 and 1.0 for real clips.
The quality figures measure that faithfully; the model is not yet the reference its images
should be.

Its quality is real because its domain is known:

* **per-frame adherence**: the digit classifier of the image models reads every frame's digit
  (the 8 x 8 window holding the most ink, upsampled to 16 x 16 exactly as the classifier's
  training digits were) and scores it against the digit the prompt names;
* **motion**: the centre of mass of the ink must travel along the prompt's direction, at least
  half of the 7 pixels a real clip moves, with less than half that across it;
* **clip features** for the Frechet distance: the frames' mean classifier features (64) and
  the centre-of-mass trajectory relative to the first frame (2 x 8), against the held-out clips.

:class:`VideoClassifier` packs all three for the quality code, which hands a video to it as
one "image" whose channels are its frames (:func:`bench.quality.video.frames_as_channels`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.kinds import ModelKind
from bench.models.digits import WEIGHTS_ROOT, training_command
from bench.models.digits.classifier import DigitClassifier, load_classifier
from bench.models.digits.data import IMAGE_SIZE, NUM_CLASSES
from bench.models.digits.unet import DigitsUNet, load_digits, load_digits_pipeline
from bench.models.digits.video_data import (
    CANVAS,
    DIGIT,
    FRAMES,
    MOTIONS,
    NUM_LABELS,
    VELOCITY,
    balanced_labels,
    fixed_clips,
    prompt_for,
    random_clips,
)
from bench.models.digits.video_pipeline import DigitsVideoPipeline

WEIGHTS_DIR = WEIGHTS_ROOT / "digits-video"
TRAIN_COMMAND = training_command("train_digits_video")
#: The frame rate the clips are written at (frames per second of the output video).
FRAME_RATE = 8.0

#: Default generation settings (the training script reports its scores at these).
DEFAULT_CALL_ARGS: dict[str, Any] = {"num_inference_steps": 25, "guidance_scale": 3.0,
                                     "num_frames": FRAMES}


def digit_windows(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 x 8 window of every frame (M, 1, 16, 16) that holds the most ink, upsampled to
    16 x 16 as the classifier's digits are: (crops (M, 1, 16, 16), top-left (M, 2))."""
    frames = frames.float()
    ink = F.avg_pool2d(frames, DIGIT, stride=1).flatten(1)  # (M, 9 * 9)
    side = CANVAS - DIGIT + 1
    where = ink.argmax(dim=1)
    rows, cols = where // side, where % side
    windows = frames[:, 0].unfold(1, DIGIT, 1).unfold(2, DIGIT, 1)  # (M, 9, 9, 8, 8)
    crops = windows[torch.arange(len(frames)), rows, cols][:, None]
    crops = F.interpolate(crops, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                          align_corners=False)
    return crops.clamp(0, 1), torch.stack([rows, cols], dim=1)


def centres_of_mass(videos: torch.Tensor) -> torch.Tensor:
    """The ink's centre of mass (row, column) of every frame of videos (N, T, 1, H, W):
    (N, T, 2); the canvas centre for an empty frame."""
    ink = videos.float()[:, :, 0]
    n, t, h, w = ink.shape
    mass = ink.sum(dim=(2, 3))
    grid_r = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    grid_c = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    safe = mass.clamp_min(1e-6)
    rows = (ink * grid_r).sum(dim=(2, 3)) / safe
    cols = (ink * grid_c).sum(dim=(2, 3)) / safe
    centre = torch.stack([rows, cols], dim=-1)
    empty = mass < 1e-6
    centre[empty] = torch.tensor([(h - 1) / 2, (w - 1) / 2])
    return centre


def motion_scores(videos: torch.Tensor) -> torch.Tensor:
    """How far the ink travels from the first frame to the last along each motion's
    direction, in pixels: (N, len(MOTIONS))."""
    centre = centres_of_mass(videos)
    shift = centre[:, -1] - centre[:, 0]  # (N, 2) rows, columns
    directions = torch.tensor([VELOCITY[m] for m in MOTIONS], dtype=torch.float32)
    return shift @ directions.T


def motion_correct(videos: torch.Tensor, motions: Sequence[int]) -> torch.Tensor:
    """Whether each video moves as asked (bool (N,)): the ink travels at least half a real
    clip's distance along the motion and less than half of that travel across it."""
    scores = motion_scores(videos)
    idx = torch.as_tensor(list(motions), dtype=torch.long)
    along = scores[torch.arange(len(idx)), idx]
    across = torch.stack([scores[:, 2], scores[:, 0]], dim=1)  # a row and a column direction
    perp = torch.where(idx < 2, across[:, 0], across[:, 1]).abs()
    return (along >= (FRAMES - 1) / 2) & (perp <= along / 2)


class VideoClassifier(nn.Module):
    """The digit classifier lifted to clips, as the quality code reads classifiers.

    Its input is a batch of clips with the frames as channels, (N, T, 16, 16) in [0, 1].
    ``forward`` gives (N, 40) scores over the clip labels ``motion * 10 + digit``: the frames'
    mean digit log-probabilities plus each motion's log-probability from the distance
    travelled along it (so the argmax is right when both the digit and the direction are).
    ``features`` gives the frames' mean classifier features and the centre-of-mass trajectory
    (``feature_dim`` = 64 + 2T), the features of the clips' Frechet distance.
    """

    def __init__(self, digits: DigitClassifier, frames: int = FRAMES) -> None:
        super().__init__()
        self.digits = digits
        self.frames = int(frames)
        self.feature_dim = digits.feature_dim + 2 * self.frames

    def _frames(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 4 or clips.shape[1] != self.frames:
            raise ValueError(f"expected clips (N, {self.frames}, H, W) with the frames as "
                             f"channels, got {tuple(clips.shape)}")
        return clips.float()[:, :, None]  # (N, T, 1, H, W)

    def frame_digits(self, clips: torch.Tensor) -> torch.Tensor:
        """The digit read in every frame: (N, T) int64."""
        videos = self._frames(clips)
        crops, _ = digit_windows(videos.flatten(0, 1))
        with torch.no_grad():
            pred = self.digits(crops.to(_device(self.digits))).argmax(dim=1).cpu()
        return pred.view(len(videos), self.frames)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        videos = self._frames(clips)
        crops, _ = digit_windows(videos.flatten(0, 1))
        logp = F.log_softmax(self.digits(crops.to(_device(self.digits))).float().cpu(), dim=1)
        digit = logp.view(len(videos), self.frames, NUM_CLASSES).mean(dim=1)
        motion = F.log_softmax(motion_scores(videos), dim=1)
        return (motion[:, :, None] + digit[:, None, :]).flatten(1)  # label = m * 10 + d

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        videos = self._frames(clips)
        crops, _ = digit_windows(videos.flatten(0, 1))
        feats = self.digits.features(crops.to(_device(self.digits))).float().cpu()
        feats = feats.view(len(videos), self.frames, -1).mean(dim=1)
        centre = centres_of_mass(videos)
        path = (centre - centre[:, :1]).flatten(1)
        return torch.cat([feats, path], dim=1)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@dataclass
class DigitsVideo(DigitsUNet):
    """The embedded ``digits-video`` reference model around a :class:`DigitsVideoPipeline`.

    Generation is :class:`DigitsUNet`'s (one generator per video); prompts name a digit and a
    motion, the real samples are clips (:func:`real_images`: (N, T, 1, 16, 16)) and the
    classifier is the :class:`VideoClassifier`.
    """

    roles: ClassVar[dict[str, str]] = {"denoiser": "transformer", "text_encoder": "text_encoder"}
    model_name: ClassVar[str] = "digits-video"
    model_kind: ClassVar[ModelKind] = ModelKind.DIT
    pipeline_class: ClassVar[type] = DigitsVideoPipeline
    weights_dir: ClassVar[Path] = WEIGHTS_DIR
    train_command: ClassVar[str] = TRAIN_COMMAND
    default_call_args: ClassVar[dict[str, Any]] = DEFAULT_CALL_ARGS
    frame_rate: float | None = FRAME_RATE

    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        """``n`` prompts cycling over the digits and motions, and their clip labels."""
        labels = balanced_labels(n)
        return [prompt_for(label) for label in labels], labels

    def real_images(self, split: str = "heldout") -> torch.Tensor:
        """One real clip per digit of ``split``: (N, T, 1, 16, 16) in [0, 1]."""
        return torch.from_numpy(fixed_clips(split).clips.copy())  # type: ignore[arg-type]

    def real_labels(self, split: str = "heldout") -> torch.Tensor:
        """The clip labels of :meth:`real_images`."""
        return torch.from_numpy(fixed_clips(split).labels.copy())  # type: ignore[arg-type]

    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Endless random clips of the ``generator`` split: (clips in [0, 1], prompts)."""
        generator = torch.Generator().manual_seed(seed)
        while True:
            batch = random_clips("generator", batch_size, generator)
            yield torch.from_numpy(batch.clips), [prompt_for(int(x)) for x in batch.labels]

    def classifier(self) -> nn.Module | None:
        """The :class:`VideoClassifier` around the shipped digit classifier."""
        if self._classifier is None:
            frames = int(self.call_args.get("num_frames", FRAMES))
            self._classifier = VideoClassifier(load_classifier(self.device), frames)
        return self._classifier

    def video_scores(self, videos: torch.Tensor, labels: Sequence[int]) -> dict[str, float]:
        """:func:`video_scores` with this model's classifier."""
        return video_scores(videos, labels, self.classifier())  # type: ignore[arg-type]


def video_scores(videos: torch.Tensor, labels: Sequence[int],
                 classifier: VideoClassifier) -> dict[str, float]:
    """Per-frame adherence (the fraction of frames whose digit is the prompt's) and the
    fraction of videos whose motion follows the prompt, of videos (N, T, 1, 16, 16) asked
    for clip ``labels``."""
    motions, digits = zip(*(divmod(int(x), NUM_CLASSES) for x in labels), strict=True)
    read = classifier.frame_digits(videos.flatten(1, 2))
    frame = (read == torch.tensor(digits)[:, None]).float().mean()
    moved = motion_correct(videos, motions).float().mean()
    return {"frame_adherence": float(frame), "motion_correct": float(moved)}


def score(model: DigitsVideo, n: int = 100, chunk: int | None = None,
          **call_args: Any) -> dict[str, float]:
    """Per-frame adherence and motion correctness of ``n`` videos (balanced prompts, seeds
    0..n-1, ``chunk`` at a time) at the model's defaults updated by ``call_args``."""
    prompts, labels = model.prompts(n)
    chunk = chunk or max(n, 1)
    videos = torch.cat([
        model.generate(prompts[i : i + chunk], list(range(i, min(i + chunk, n))), **call_args)
        for i in range(0, n, chunk)
    ])
    return model.video_scores(videos, labels)


def load_pipeline(
    directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> DigitsVideoPipeline:
    """Load the shipped :class:`DigitsVideoPipeline` (float32, offline, safetensors only)."""
    return load_digits_pipeline(DigitsVideo, directory, device)


def load(device: str = "cpu", directory: str | Path | None = None) -> DigitsVideo:
    """Load ``digits-video`` from the weights shipped in the package (seconds, offline).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    return load_digits(DigitsVideo, device, directory)


__all__ = ["DEFAULT_CALL_ARGS", "FRAME_RATE", "NUM_LABELS", "TRAIN_COMMAND", "WEIGHTS_DIR",
           "DigitsVideo", "VideoClassifier", "centres_of_mass", "digit_windows", "load",
           "load_pipeline", "motion_correct", "motion_scores", "score", "video_scores"]
