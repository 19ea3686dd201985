"""The report's Pareto frontiers: :mod:`bench.core.pareto` (the front itself, pure numpy),
and the ordering of a two-objective front that the report draws as a staircase.

Directions are always passed in (``higher_is_better`` per objective, taken from each
metric's declaration), never assumed; see :mod:`bench.core.pareto` for the definitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.core.pareto import dominates, pareto_front, pareto_mask


def pareto_front_2d(
    x: Sequence[float],
    y: Sequence[float],
    x_higher_is_better: bool = False,
    y_higher_is_better: bool = True,
) -> list[int]:
    """Frontier indices of a latency-versus-quality scatter, ordered by ``x`` ascending.

    With ``steps-post`` drawing, the returned order traces the frontier's staircase: the
    best quality reachable at each cost.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values but y has {len(y)}")
    front = pareto_front(np.column_stack([x, y]) if len(x) else np.zeros((0, 2)),
                         [x_higher_is_better, y_higher_is_better])
    xs = np.asarray(x, dtype=float)
    return sorted(front, key=lambda i: (xs[i], i))


__all__ = ["dominates", "pareto_front", "pareto_front_2d", "pareto_mask"]
