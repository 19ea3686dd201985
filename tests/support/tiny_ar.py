"""A randomly initialised digits-ar of the real layout, small enough to decode in milliseconds."""

from __future__ import annotations

import torch

from bench.models import digits_ar
from bench.models.digits_ar import DigitsAR, build_lm

#: The tiny architecture (the shipped model is 8 x 256).
TINY = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}


def tiny_model(seed: int = 0) -> DigitsAR:
    """A digits-ar with random weights of the :data:`TINY` size."""
    return DigitsAR(
        name="digits-ar",
        kind="autoregressive",
        device=torch.device("cpu"),
        call_args=dict(digits_ar.DEFAULT_CALL_ARGS),
        lm=build_lm(TINY, seed=seed).eval(),
    )
