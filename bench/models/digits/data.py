"""The handwritten digits that scikit-learn ships, as the embedded models see them.

Images are 8x8 with values 0..16; they are upsampled bilinearly to 16x16 and scaled to
[0, 1]. The 1797 images are split once, with a fixed seed and stratified by digit, into
three disjoint parts so that no model is scored on data it was trained on:

* ``generator``: trains the generative reference models (and strategies that train them);
* ``classifier``: trains the digit classifier that scores prompt adherence;
* ``heldout``: real images never seen in training, used for FID/KID and for checking the
  classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

Split = Literal["generator", "classifier", "heldout", "all"]

IMAGE_SIZE = 16
NUM_CLASSES = 10
PROMPT_TEMPLATE = "a handwritten {digit}"
_SPLIT_SEED = 20240607
_SPLIT_SIZES = {"classifier": 500, "heldout": 297}  # the rest (1000) goes to the generator


def prompt_for(digit: int) -> str:
    """The canonical prompt asking for ``digit`` (0..9)."""
    if not 0 <= int(digit) < NUM_CLASSES:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    return PROMPT_TEMPLATE.format(digit=int(digit))


def digit_of(prompt: str) -> int | None:
    """The digit a canonical prompt asks for, or None when the prompt names none."""
    for token in reversed(prompt.strip().split()):
        if token.isdigit() and len(token) == 1:
            return int(token)
    return None


@dataclass(frozen=True)
class DigitsSplit:
    """Images (N, 1, 16, 16) float32 in [0, 1] and their labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@cache
def split_indices() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rng = np.random.default_rng(_SPLIT_SEED)
    parts: dict[str, list[int]] = {"generator": [], "classifier": [], "heldout": []}
    n = len(labels)
    # Stratified: take each split's share of every class.
    for digit in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == digit)
        rng.shuffle(idx)
        n_cls = round(len(idx) * _SPLIT_SIZES["classifier"] / n)
        n_held = round(len(idx) * _SPLIT_SIZES["heldout"] / n)
        parts["classifier"] += idx[:n_cls].tolist()
        parts["heldout"] += idx[n_cls : n_cls + n_held].tolist()
        parts["generator"] += idx[n_cls + n_held :].tolist()
    return {k: np.sort(np.asarray(v)) for k, v in parts.items()}


def _upsample(images8: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images8.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).numpy()


@cache
def load_split(split: Split = "generator") -> DigitsSplit:
    """Load one split of the digits at 16x16 in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    if split == "all":
        idx = np.arange(len(digits.target))
    elif split in ("generator", "classifier", "heldout"):
        idx = split_indices()[split]
    else:
        raise ValueError(f"unknown split {split!r}; choose generator, classifier, heldout or all")
    images = _upsample(digits.images[idx])
    images.setflags(write=False)
    labels = digits.target[idx].astype(np.int64)
    labels.setflags(write=False)
    return DigitsSplit(images=images, labels=labels)


def balanced_labels(n: int) -> list[int]:
    """``n`` digit labels cycling 0..9, so every digit is asked for equally often."""
    return [i % NUM_CLASSES for i in range(n)]
