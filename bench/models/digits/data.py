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
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

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
def _digits() -> Any:
    """scikit-learn's digits (loaded on first use: scikit-learn is slow to import)."""
    from sklearn.datasets import load_digits

    return load_digits()


@cache
def split_indices() -> dict[str, np.ndarray]:
    """The indices of the three disjoint splits (stratified by digit, fixed seed)."""
    labels = _digits().target
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
    x = torch.from_numpy(images8.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).numpy()


def split_index(split: Split) -> np.ndarray:
    """Indices into scikit-learn's digits of one split (``all``: every image, in order)."""
    if split == "all":
        return np.arange(len(_digits().target))
    if split in ("generator", "classifier", "heldout"):
        return split_indices()[split]
    raise ValueError(f"unknown split {split!r}; choose generator, classifier, heldout or all")


@cache
def load_split(split: Split = "generator") -> DigitsSplit:
    """Load one split of the digits at 16x16 in [0, 1]."""
    idx = split_index(split)
    digits = _digits()
    images = _upsample(digits.images[idx])
    images.setflags(write=False)
    labels = digits.target[idx].astype(np.int64)
    labels.setflags(write=False)
    return DigitsSplit(images=images, labels=labels)


def raw_split(split: Split = "generator") -> tuple[np.ndarray, np.ndarray]:
    """One split at its native 8x8 resolution: (images (N, 8, 8) int64 in 0..16, labels
    (N,)); the same images, in the same order, as :func:`load_split`."""
    idx = split_index(split)
    digits = _digits()
    return digits.images[idx].astype(np.int64), digits.target[idx].astype(np.int64)


def balanced_labels(n: int) -> list[int]:
    """``n`` digit labels cycling 0..9, so every digit is asked for equally often."""
    return [i % NUM_CLASSES for i in range(n)]
