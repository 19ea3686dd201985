"""Injecting a slowdown of known size, to check that comparisons catch it."""

from __future__ import annotations

import time
from typing import Any


def inject_slowdown(model: Any, fraction: float) -> Any:
    """Make every ``generate`` call of ``model`` take ``1 + fraction`` times as long.

    After each real call the wrapper busy-waits for ``fraction`` of that call's duration
    (spinning, not sleeping, so the extra time costs CPU as real work would).
    """
    if fraction < 0:
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    inner = model.generate

    def slowed(*args: Any, **kwargs: Any):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        until = time.perf_counter() + fraction * (time.perf_counter() - t0)
        while time.perf_counter() < until:
            pass
        return out

    model.generate = slowed
    model.notes["injected_slowdown"] = fraction
    return model
