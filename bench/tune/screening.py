"""The screening that opens a new ``accelbench tune`` study, and the combination after it.

Every strategy of the space alone at its defaults (and each pair a strategy declares with
``screen_with``: a scheduler with the step count) is measured in one cheap interleaved run
with the baseline, in the tuner's process: one model load and one baseline for all, and the
per-technique answer first. The units that met the constraints and were faster are then
tried together (a forward combination), and while that misses a constraint, again without
the one that lost most quality alone (a backward elimination); the sampler searches from
there. Used by :class:`bench.tune.Tuner` as a mixin.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.core import results
from bench.core.config import RunConfig, TimingConfig
from bench.core.formats import number
from bench.core.record import REFERENCE
from bench.measure.engine import Engine
from bench.tune import search_space
from bench.tune.budget import WARMUP
from bench.tune.search_space import NONE

#: Quality images of the screening run (each strategy alone: guidance, not the answer).
SCREEN_IMAGES = 64
#: A strategy alone this many times slower than the baseline leaves the screening after a round.
PRUNE_IN_SCREENING = 4.0


class ScreeningCut(Exception):
    """The screening ran past its share of the budget (raised by :func:`deadline`)."""


#: Seconds between repeats of the screening's alarm once its deadline has passed.
RECUT_S = 0.05


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`ScreeningCut` in this (main) thread once ``seconds`` have passed: the
    screening runs in the tuner's process, where no job timeout can stop a compilation that
    takes minutes. A no-op off the main thread (signals are delivered only there).

    The alarm repeats every :data:`RECUT_S` until the block is left: Python drops an
    exception raised while a finalizer runs (a garbage collection in the engine's memory
    pass calls many), so one alarm could be lost and the screening overrun its share."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cut(signum: int, frame: Any) -> None:
        raise ScreeningCut(f"past {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, cut)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01), RECUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def state(name: str) -> Any:
    """Optuna's trial state called ``name``."""
    from optuna.trial import TrialState

    return TrialState[name]


class Screening:
    """The screening and the combination (mixed into :class:`bench.tune.Tuner`)."""

    config: Any
    out: Any
    log: Any

    def _screen(self, study: Any, space: Any) -> None:
        """A new study's first batch: every strategy of the space alone, at its defaults,
        measured together with the baseline in one cheap interleaved run in this process
        (one model load, one baseline for all). Each is a trial of the study, so the sampler
        starts from what every technique buys on this model instead of from random stacks;
        the per-technique figures are the tune folder's ``screen/`` run. Skipped when the
        study already has trials, when trials run elsewhere (Ray), or when it would not leave
        room for the final measurement."""

        cfg = self.config
        if cfg.executor != "local" or study.get_trials(deepcopy=False):
            return
        singles = search_space.singles(space)
        images = min(SCREEN_IMAGES, cfg.cheap_quality_images)
        estimate = self._final_s([1.0] * len(singles), cfg.cheap_iterations, images)
        if estimate + self._smallest_final_s() > self._left():
            self.log(f"screening skipped: {len(singles)} strategies alone would take about "
                     f"{estimate / 60:.1f} min of the {self._left() / 60:.1f} left")
            return
        asked: list[tuple[Any, str]] = []
        for params in singles:
            study.enqueue_trial(params)
            if got := self._ask(study, space, screening=True):
                asked.append(got)
        if not asked:
            return
        self.log(f"screening {len(asked)} strategies alone, interleaved with the baseline in one run "
                 f"(about {estimate / 60:.1f} min at most)")
        config = RunConfig(
            model=cfg.model, strategies=(REFERENCE, *(spec for _, spec in asked)), device=cfg.device,
            batch_size=cfg.batch_size,
            timing=TimingConfig(warmup=WARMUP, min_iterations=cfg.cheap_iterations, min_seconds=0,
                                max_iterations=cfg.cheap_iterations, prune_slower_than=PRUNE_IN_SCREENING),
            quality_images=images, out_dir=self.out / "screen", threads=cfg.threads,
            schedule="interleaved", count_flops=False,
        )
        limit = self._left() - self._smallest_final_s()
        try:
            with deadline(limit):
                records = Engine(config, log=None, show_progress=False).run().records
        except ScreeningCut:
            written = results.results_path(self.out / "screen")
            records = list(results.iter_records(written)) if written.exists() else []
            why = f"the screening was cut after {limit:.0f} s to keep the budget"
            self.log(why)
            records += [{"strategy": spec, "status": "failed", "error": why}
                        for _, spec in asked if spec not in {r["strategy"] for r in records}]
        by_spec = {r["strategy"]: r for r in records}
        base = by_spec.get(REFERENCE)
        self._tell_all(study, asked, by_spec, baseline=base)
        combined = self._combination(study, base)
        if combined:
            study.enqueue_trial(combined, user_attrs={"combination": True,
                                                      "combination_units": [list(u) for u in self._units]})

    def _combination(self, study: Any, base: dict[str, Any] | None) -> dict[str, Any] | None:
        """The next trial after the screening: every screened unit (a strategy alone, or a
        declared pair such as a scheduler with the step count) that met the constraints and
        was faster (its paired speedup called faster), together: a forward combination, which
        the sampler then searches around. Units sharing a strategy or an exclusive group keep
        the faster, a pair winning over its member when within 5% of its speed and losing
        less quality. The units are remembered, lossiest first, for :meth:`_trim`."""
        if base is None:
            return None
        base_q = {k: number(v) for k, v in (base.get("quality") or {}).items()}
        units = []
        for t in study.get_trials(deepcopy=False):
            if t.state.name != "COMPLETE" or not t.user_attrs.get("screening"):
                continue
            if t.user_attrs.get("verdict") != "faster" or any(v > 0 for v in t.user_attrs.get("constraints") or []):
                continue
            slots = tuple(k for k, v in t.params.items() if k.startswith(("group.", "use.")) and v not in (NONE, False))
            units.append((slots, t.user_attrs.get("speedup") or 0.0,
                          self._loss(base_q, base, t.user_attrs.get("quality") or {}), t.params))
        chosen: list[tuple[tuple[str, ...], float, float, dict[str, Any]]] = []
        for unit in sorted(units, key=lambda u: -u[1]):
            clash = [c for c in chosen if set(c[0]) & set(unit[0])]
            if not clash:
                chosen.append(unit)
            elif len(unit[0]) > 1 and all(unit[1] >= 0.95 * c[1] and unit[2] < c[2] for c in clash):
                chosen = [c for c in chosen if c not in clash] + [unit]
        if len(chosen) < 2:
            return None
        self._units = {u[0]: u[3] for u in chosen}
        self._lossy = [u[0] for u in sorted(chosen, key=lambda u: -u[2]) if u[2] > 0]
        self.log("next: the strategies that helped alone, together: " + self._units_text(list(self._units)))
        return self._combined(list(self._units))

    def _combined(self, units: list[tuple[str, ...]]) -> dict[str, Any]:
        """Trial parameters of the screened ``units`` together, every other strategy off."""
        params: dict[str, Any] = {}
        for unit in units:
            for k, v in self._units[unit].items():
                if k.startswith(("group.", "use.")) and v in (NONE, False):
                    params.setdefault(k, v)
                elif k.startswith(("group.", "use.")) and k not in unit:
                    params.setdefault(k, NONE if k.startswith("group.") else False)
                else:
                    params[k] = v
        return params

    def _units_text(self, units: list[tuple[str, ...]]) -> str:
        return ", ".join(sorted("+".join(str(self._units[u][s]) if s.startswith("group.") else s[4:]
                                         for s in u) for u in units))

    def _loss(self, base_q: dict[str, float | None], base: dict[str, Any], quality: dict[str, Any]) -> float:
        """How much quality a stack lost against the baseline, as a share of each constraint's
        room (its bound's distance from the baseline's value); the largest over constraints."""
        worst = 0.0
        for c in self.config.constraints:
            b, v, bound = base_q.get(c.metric), number(quality.get(c.metric)), c.bound(base)
            if b is None or v is None or bound is None or bound == b:
                continue
            worst = max(worst, (v - b) / abs(bound - b) * (1 if c.op == "<=" else -1))
        return worst

    def _trim(self, study: Any) -> None:
        """After the combination (or a trimmed one) missed a constraint: the same without its
        lossiest remaining unit, while some remain (a backward elimination)."""
        combos = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("combination")]
        lossy = getattr(self, "_lossy", [])
        if not combos or not lossy or combos[-1].state.name not in ("COMPLETE", "FAIL", "PRUNED"):
            return
        last = combos[-1]
        if last.state.name == "COMPLETE" and all(v <= 0 for v in last.user_attrs.get("constraints") or [1]):
            self._lossy = []
            return
        kept = [u for u in map(tuple, last.user_attrs["combination_units"]) if u != lossy[0]]
        self._lossy = lossy[1:]
        if len(kept) < 2:
            return
        self.log(f"next: the combination without {self._units_text([lossy[0]])} "
                 f"(the lossiest alone): {self._units_text(kept)}")
        study.enqueue_trial(self._combined(kept), user_attrs={"combination": True,
                                                             "combination_units": [list(u) for u in kept]})

