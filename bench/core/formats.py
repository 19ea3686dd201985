"""Small, torch-free formats every part shares: numbers read back from records, JSON-safe
values, file-name slugs, and numbers formatted for tables."""

from __future__ import annotations

import math
import re
from typing import Any


def number(value: Any) -> float | None:
    """A float from a record value: numbers, and the strings ``"inf"``/``"-inf"``/``"nan"``
    that :func:`sanitize` writes for them; None when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def sanitize(value: Any) -> Any:
    """A JSON-safe copy: infinities and NaN become ``"inf"``, ``"-inf"``, ``"nan"`` (read back
    with :func:`number`), tuples become lists, keys become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else "nan"
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    return value


def slug(text: str) -> str:
    """A file-name-safe form of a strategy spec (``bf16+steps:n=10`` -> ``bf16__steps_n-10``)."""
    text = text.replace("+", "__").replace(":", "_").replace("=", "-").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def fmt(value: Any, spec: str = ".3g") -> str:
    """``value`` formatted with ``spec`` for a table: ``-`` when absent, ``inf`` for
    infinities, strings passed through unless they hold a number."""
    if value is None:
        return "-"
    if isinstance(value, str):
        parsed = number(value)
        if parsed is None:
            return value
        value = parsed
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return format(value, spec)


__all__ = ["fmt", "number", "sanitize", "slug"]
