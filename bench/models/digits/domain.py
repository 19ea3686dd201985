"""What the embedded digits models share: their data domain (prompts, real images, training
batches, the digit classifier) and quiet loading."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import diffusers.utils.logging as dlog
import numpy as np
import torch
import transformers.utils.logging as tlog

from bench.models.base import DataDomain
from bench.models.digits.classifier import load_classifier
from bench.models.digits.data import balanced_labels, load_split, prompt_for


@dataclass
class DigitsDomain(DataDomain):
    """The data domain of the digits models (mixed in before
    :class:`~bench.models.base.ReferenceModel`): prompts balanced over 0..9, the
    :mod:`~bench.models.digits.data` splits and the digit classifier."""

    _classifier: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        """``n`` prompts cycling over the digits, and the digits they ask for."""
        labels = balanced_labels(n)
        return [prompt_for(d) for d in labels], labels

    def real_images(self, split: str = "heldout") -> torch.Tensor:
        """The real digits of ``split`` at 16x16 in [0, 1]."""
        return torch.from_numpy(load_split(split).images.copy())  # type: ignore[arg-type]

    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Endless shuffled batches of the ``generator`` split: (images in [0, 1], prompts)."""
        return digits_batches("generator", batch_size, seed)

    def classifier(self) -> torch.nn.Module | None:
        """The shipped digit classifier, loaded on first use."""
        if self._classifier is None:
            self._classifier = load_classifier(self.device)  # type: ignore[attr-defined]
        return self._classifier


def shuffled_batches(n: int, batch_size: int, seed: int = 0) -> Iterator[list[int]]:
    """Endless batches of indices into ``n`` items, reshuffled every epoch with a seeded
    generator (a batch may straddle two epochs)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0
    while True:
        idx: list[int] = []
        while len(idx) < batch_size:
            if pos == len(order):
                order, pos = rng.permutation(n), 0
            take = min(batch_size - len(idx), len(order) - pos)
            idx.extend(order[pos : pos + take].tolist())
            pos += take
        yield idx


def digits_batches(
    split: str, batch_size: int, seed: int = 0
) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Endless batches of one split, reshuffled every epoch with a seeded generator."""
    data = load_split(split)  # type: ignore[arg-type]
    images = torch.from_numpy(data.images.copy())
    labels = data.labels
    for idx in shuffled_batches(len(labels), batch_size, seed):
        yield images[idx], [prompt_for(int(labels[i])) for i in idx]


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' progress bars and info logs while loading."""
    d_level, t_level = dlog.get_verbosity(), tlog.get_verbosity()
    d_bar, t_bar = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(d_level)
        tlog.set_verbosity(t_level)
        if d_bar:
            dlog.enable_progress_bar()
        if t_bar:
            tlog.enable_progress_bar()


__all__ = ["DigitsDomain", "digits_batches", "quiet_loading", "shuffled_batches"]
