"""Moving handwritten digits: the clips ``digits-video`` learns from and is scored against.

A clip is ``FRAMES`` frames of a ``CANVAS`` x ``CANVAS`` canvas (values in [0, 1], black
background) on which one of scikit-learn's digits, at its native 8 x 8 size, translates by
one pixel per frame in one of four directions (:data:`MOTIONS`). The digit starts 0 or 1
pixel from the edge it leaves and sits 2 to 6 pixels from the perpendicular edge, so it stays
whole on the canvas. The prompt names the digit and the motion: ``"a handwritten 7 moving
left"``; a clip's label is ``motion * 10 + digit`` (40 classes).

The digits come from the splits of :mod:`bench.models.digits.data` (``generator`` trains the
model, ``heldout`` gives the real clips of the Frechet distance), so the video model, like the
image models, is never scored on digits it was trained on. Every clip is a pure function of
its split index, motion and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from bench.models.digits.data import NUM_CLASSES, Split, raw_split

FRAMES = 8
CANVAS = 16
DIGIT = 8
MOTIONS = ("left", "right", "up", "down")
#: Pixels a motion moves the digit per frame: (rows, columns).
VELOCITY = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
NUM_LABELS = NUM_CLASSES * len(MOTIONS)
PROMPT_TEMPLATE = "a handwritten {digit} moving {motion}"
#: The words of the prompts (the tokenizer's vocabulary).
PROMPT_WORDS = ("a", "handwritten", *(str(d) for d in range(NUM_CLASSES)), "moving", *MOTIONS)
_HELDOUT_SEED = 20261203


def prompt_for(label: int) -> str:
    """The prompt of clip label ``label`` (``motion * 10 + digit``)."""
    motion, digit = divmod(int(label), NUM_CLASSES)
    if not 0 <= motion < len(MOTIONS):
        raise ValueError(f"clip label must be in 0..{NUM_LABELS - 1}, got {label}")
    return PROMPT_TEMPLATE.format(digit=digit, motion=MOTIONS[motion])


def parse_prompt(prompt: str) -> tuple[int | None, str | None]:
    """The digit and the motion a prompt asks for (None for what it does not name)."""
    words = prompt.lower().split()
    digit = next((int(w) for w in words if w.isdigit() and len(w) == 1), None)
    motion = next((w for w in words if w in VELOCITY), None)
    return digit, motion


def balanced_labels(n: int) -> list[int]:
    """``n`` clip labels cycling over the digits and, every ten, the next motion: every
    (digit, motion) pair is asked for equally often in 40 clips."""
    return [(i // NUM_CLASSES) % len(MOTIONS) * NUM_CLASSES + i % NUM_CLASSES for i in range(n)]


def start_position(motion: str, jitter: int, offset: int) -> tuple[int, int]:
    """Top-left (row, column) of the digit in the first frame: ``jitter`` (0 or 1) pixels
    from the edge it moves away from, ``offset`` (2..6) pixels from the perpendicular edge."""
    far = CANVAS - DIGIT - (FRAMES - 1) - jitter  # the start when moving towards 0
    along = {"left": CANVAS - DIGIT - jitter, "right": jitter,
             "up": CANVAS - DIGIT - jitter, "down": jitter}[motion]
    if far < 0 or not 0 <= along <= CANVAS - DIGIT:
        raise ValueError(f"a {FRAMES}-frame clip does not fit a {CANVAS}-pixel canvas")
    return (offset, along) if motion in ("left", "right") else (along, offset)


def render(digit8: np.ndarray, motion: str, jitter: int, offset: int) -> np.ndarray:
    """One clip (FRAMES, 1, CANVAS, CANVAS) float32 in [0, 1] of an 8 x 8 digit (0..16)."""
    clip = np.zeros((FRAMES, 1, CANVAS, CANVAS), dtype=np.float32)
    row, col = start_position(motion, jitter, offset)
    d_row, d_col = VELOCITY[motion]
    glyph = digit8.astype(np.float32) / 16.0
    for f in range(FRAMES):
        r, c = row + f * d_row, col + f * d_col
        clip[f, 0, r : r + DIGIT, c : c + DIGIT] = glyph
    return clip


@dataclass(frozen=True)
class ClipSet:
    """Clips (N, FRAMES, 1, CANVAS, CANVAS) float32 in [0, 1] and their labels (N,)."""

    clips: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def random_clips(split: Split, n: int, generator: torch.Generator) -> ClipSet:
    """``n`` clips drawn at random from ``split``: a random digit image, motion, start jitter
    and perpendicular offset each (the training batches)."""
    images, digits = _raw(split)
    idx = torch.randint(0, len(digits), (n,), generator=generator).numpy()
    motion = torch.randint(0, len(MOTIONS), (n,), generator=generator).numpy()
    jitter = torch.randint(0, 2, (n,), generator=generator).numpy()
    offset = torch.randint(2, 7, (n,), generator=generator).numpy()
    clips = np.stack([render(images[i], MOTIONS[m], j, o)
                      for i, m, j, o in zip(idx, motion, jitter, offset, strict=True)])
    return ClipSet(clips, motion * NUM_CLASSES + digits[idx])


@cache
def fixed_clips(split: Split = "heldout") -> ClipSet:
    """One clip per digit image of ``split``, motions cycling over the images and jitter and
    offset from a fixed seed (the real clips a Frechet distance compares against)."""
    images, digits = _raw(split)
    rng = np.random.default_rng(_HELDOUT_SEED)
    motion = np.arange(len(digits)) % len(MOTIONS)
    jitter = rng.integers(0, 2, len(digits))
    offset = rng.integers(2, 7, len(digits))
    clips = np.stack([render(images[i], MOTIONS[motion[i]], jitter[i], offset[i])
                      for i in range(len(digits))])
    clips.setflags(write=False)
    labels = (motion * NUM_CLASSES + digits).astype(np.int64)
    labels.setflags(write=False)
    return ClipSet(clips, labels)


@cache
def _raw(split: Split) -> tuple[np.ndarray, np.ndarray]:
    return raw_split(split)


__all__ = [
    "CANVAS", "DIGIT", "FRAMES", "MOTIONS", "NUM_LABELS", "PROMPT_WORDS", "VELOCITY", "ClipSet",
    "balanced_labels", "fixed_clips", "parse_prompt", "prompt_for", "random_clips", "render",
    "start_position",
]
