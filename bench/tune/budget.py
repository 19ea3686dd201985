"""The budget of ``accelbench tune``: what is left, what the next trial and the final
measurement are expected to cost, and the largest final measurement that fits.

The final measurement's cost is estimated from the baseline's own call time and each
candidate's trial speedup: per stack its warm-up, timed and memory calls and its quality
images' calls, times :data:`FINAL_SAFETY`, plus :data:`RUN_OVERHEAD_S` for loading and
scoring. Used by :class:`bench.tune.Tuner` as a mixin (it reads ``config``, ``started``,
``baseline`` and ``_batch_s``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

#: Warm-up calls per stack, cheap and full (the protocol's 2).
WARMUP = 2
#: The fewest timed rounds of the final measurement (the paired interval needs 6).
MIN_FULL_ITERATIONS = 6
#: Seconds kept free at the end of the budget (the process's start and the answer's write).
END_MARGIN_S = 15.0
#: The final measurement's estimate is multiplied by this before it is trusted to fit.
FINAL_SAFETY = 1.3
#: Seconds of a run beyond its calls (loading the model, scoring, writing records).
RUN_OVERHEAD_S = 25.0


class Budget:
    """Wall-clock accounting of one search (mixed into :class:`bench.tune.Tuner`)."""

    config: Any
    started: float
    baseline: dict[str, Any] | None
    _batch_s: list[float]

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _left(self) -> float:
        """Seconds of the budget still free (the end margin kept)."""
        return self.config.budget_s - END_MARGIN_S - self._elapsed()

    def _trial_estimate(self) -> float:
        """Seconds the next batch of trials is expected to take: the median batch so far (the
        baseline's job, twice, before any). A slower one cannot eat the final measurement:
        its job is cut at what is left after the smallest final (see :meth:`_measure`)."""
        done = sorted(self._batch_s[1:]) or [2 * self._batch_s[0]]
        return done[len(done) // 2]

    def _room_for_a_trial(self) -> bool:
        return self._trial_estimate() + self._smallest_final_s() <= self._left()

    def _baseline_call_s(self) -> float:
        lat = (self.baseline or {}).get("timing", {}).get("latencies_s") or [1.0]
        return sorted(lat)[len(lat) // 2]

    def _smallest_final_s(self) -> float:
        """The final measurement at its smallest: the baseline and one candidate as fast as
        the baseline, the fewest rounds, the trials' quality images."""
        return self._final_s([1.0], MIN_FULL_ITERATIONS, self.config.cheap_quality_images)

    def _final_s(self, speedups: Sequence[float], n: int, images: int) -> float:
        """Estimated seconds of a final run of the baseline and stacks of ``speedups``."""
        cfg = self.config
        timed = WARMUP + n + 1  # +1: the memory call
        quality = math.ceil(images / cfg.batch_size)
        calls = sum((timed + quality) / max(s, 1e-3) for s in speedups)
        # the baseline's images at the trials' count are cached by its own job
        calls += timed + (0 if images == cfg.cheap_quality_images else quality)
        return FINAL_SAFETY * (RUN_OVERHEAD_S + calls * self._baseline_call_s())

    def _final_plan(self, candidates: list[str], trials: list[Any]
                    ) -> tuple[list[str], int, int, list[float]] | None:
        """(candidates, rounds, quality images) of the largest final run that fits what is
        left of the budget: quality images shrink first (to the trials' count), then rounds
        (to :data:`MIN_FULL_ITERATIONS`), then candidates from the last; None if none fits."""
        cfg = self.config
        speed = {t.stack: t.speedup or 1.0 for t in trials if t.state == "complete"}
        left = self._left()
        n_full = max(cfg.full_iterations, MIN_FULL_ITERATIONS)
        images_steps = sorted({cfg.full_quality_images, cfg.cheap_quality_images,
                               *range(cfg.cheap_quality_images, cfg.full_quality_images, 32)},
                              reverse=True)
        for k in range(len(candidates), 0, -1):
            chosen = candidates[:k]
            speedups = [speed.get(c, 1.0) for c in chosen]
            for images in images_steps:
                if self._final_s(speedups, n_full, images) <= left:
                    return chosen, n_full, images, speedups
            for n in range(n_full - 1, MIN_FULL_ITERATIONS - 1, -1):
                if self._final_s(speedups, n, cfg.cheap_quality_images) <= left:
                    return chosen, n, cfg.cheap_quality_images, speedups
        return None

