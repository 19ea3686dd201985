"""``ACCELBENCH_SMOKE=1``: every command at a smoke test's size.

With the variable set, the sizes a command measures at are capped (timed calls, quality
images, a search's budget, trials and batch size, a sweep's timing), whatever the command line or file
says, so that every example of the README runs in seconds (its test sets it). The figures
are then only a smoke test: the summary says so.
"""

from __future__ import annotations

import os

ENV = "ACCELBENCH_SMOKE"

#: The largest value each size may take under the variable.
CAPS: dict[str, float] = {
    "iterations": 3,
    "warmup": 1,
    "min_seconds": 0.0,
    "quality_images": 16,
    "budget_s": 240.0,
    "trials": 3,
    "full_images": 16,
    "cheap_images": 8,
    "rounds": 3,
    "batch_size": 2,
}


def active() -> bool:
    """True when the variable is set to anything but empty or 0."""
    return os.environ.get(ENV, "") not in ("", "0")


def cap(name: str, value):
    """``value``, or the smoke cap of ``name`` when smaller and the variable is set."""
    if not active() or value is None:
        return value
    limit = CAPS[name]
    return type(value)(min(value, limit)) if isinstance(value, (int, float)) else value


def note() -> str | None:
    """What to tell the user when sizes were capped."""
    return f"{ENV} is set: sizes are capped for a smoke run; the figures are not measurements" if active() else None


__all__ = ["CAPS", "ENV", "active", "cap", "note"]
