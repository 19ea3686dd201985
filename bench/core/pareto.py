"""Pareto fronts: which points no other point beats on every objective at once.

Pure Python and numpy, torch-free: the report's frontiers and the search's front are both
computed here. Directions are always passed in (``higher_is_better`` per objective, taken
from each metric's declaration), never assumed.

Definitions used throughout:

* ``a`` *dominates* ``b`` when ``a`` is at least as good as ``b`` on every objective and
  strictly better on at least one.
* The *frontier* is the set of points no other point dominates. Identical points do not
  dominate each other, so ties are on the frontier together.
* A point with a missing value (NaN) on any objective cannot be compared: it is never on the
  frontier and dominates nothing. Infinities compare as usual (``inf`` PSNR, an image
  identical to the baseline's, beats every finite PSNR).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_costs(points: Sequence[Sequence[float]] | np.ndarray, higher_is_better: Sequence[bool]) -> np.ndarray:
    """Points as an (n, k) float array in which lower is better on every column."""
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if len(higher_is_better) == 1 else arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"points must be an (n, k) array, got shape {arr.shape}")
    directions = [bool(h) for h in higher_is_better]
    if arr.shape[1] != len(directions):
        raise ValueError(
            f"{arr.shape[1]} objective(s) per point but {len(directions)} direction(s) given"
        )
    signs = np.where(directions, -1.0, 1.0)
    return arr * signs


def dominates(a: Sequence[float], b: Sequence[float], higher_is_better: Sequence[bool]) -> bool:
    """Whether point ``a`` dominates point ``b`` (see the module docstring)."""
    costs = _as_costs([a, b], higher_is_better)
    if np.isnan(costs).any():
        return False
    ca, cb = costs
    return bool(np.all(ca <= cb) and np.any(ca < cb))


def pareto_mask(
    points: Sequence[Sequence[float]] | np.ndarray, higher_is_better: Sequence[bool]
) -> np.ndarray:
    """A boolean array, True where the point is on the frontier.

    Args:
        points: n points of k objectives each, shape (n, k).
        higher_is_better: one direction per objective.
    """
    costs = _as_costs(points, higher_is_better)
    n = costs.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    valid = ~np.isnan(costs).any(axis=1)
    c = costs[valid]
    # le[j, i]: j is at least as good as i everywhere; lt[j, i]: j is better somewhere.
    le = (c[:, None, :] <= c[None, :, :]).all(axis=2)
    lt = (c[:, None, :] < c[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    mask = np.zeros(n, dtype=bool)
    mask[np.flatnonzero(valid)] = ~dominated
    return mask


def pareto_front(
    points: Sequence[Sequence[float]] | np.ndarray, higher_is_better: Sequence[bool]
) -> list[int]:
    """Indices of the frontier's points, ordered along the first objective from its best
    end (ties broken by the next objectives, then by index)."""
    costs = _as_costs(points, higher_is_better)
    mask = pareto_mask(points, higher_is_better)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    keys = [idx] + [costs[idx, k] for k in reversed(range(costs.shape[1]))]
    order = np.lexsort(keys)
    return [int(i) for i in idx[order]]


__all__ = ["dominates", "pareto_front", "pareto_mask"]
