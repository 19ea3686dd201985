"""``accelbench tune``: the fastest (or leanest) stack of a model above a quality floor.

The search space comes from the strategy registry (:mod:`bench.tune.search_space`); Optuna searches
it. With constraints, a constrained single-objective search (TPE with Optuna's constraint
handling); without, a multi-objective one (NSGA-II over the objective and the model's quality
metrics) whose answer is the Pareto front.

Cheap first, expensive for the promising:

1. **Every trial** is one sweep job (:mod:`bench.sweep`) run by the sweep executors (local
   processes, or Ray tasks with ``--executor ray``): the trial's stack interleaved with the
   baseline in one process, a few timed calls, a few quality images. Its objective is
   relative to the baseline it was timed against (the speedup's inverse for latency), so the
   machine's drift between trials does not move it.
2. **The best candidates** (the best feasible trials, or the Pareto front) are then measured
   together, with the baseline, in one full interleaved engine run (more calls, the full
   quality images), and the constraints are checked again on those figures. That run is the
   answer, with each speedup's interval.

The budget is the wall time of the whole invocation, the final measurement included: trials
are asked only while the next one and the smallest final measurement still fit, each trial's
job is cut at what is left, and the final measurement shrinks (fewer quality images, fewer
rounds, fewer candidates) to fit what remains, estimated from the trials' own call times;
when not even its smallest form fits, the answer is the trials' cheap figures, labelled so.
A trial whose stack is, after a timed round, slower than the baseline by more than the best
speedup found so far (and at least :data:`MIN_PRUNE_SLOWDOWN`) is stopped there and recorded
as pruned (Optuna's ``PRUNED`` state, with its intermediate ratio reported). For a latency or
energy objective a step count is searched below the model's own.

The study lives in the output folder (``study.db``, SQLite) unless ``--storage`` names another
Optuna storage (for many machines); run the same command again to continue it: finished
trials are kept (and their jobs are not measured again), a trial cut by a kill is marked
failed. Training strategies join only with ``--allow-training``; their one-off cost is kept
with each trial and shown beside it.

Constraints: ``metric>=value`` or ``metric<=value`` on a quality metric (``adherence>=0.97``,
``psnr>=30``, ``fid<=3``), where ``floor`` as the value means "within the baseline's noise
band": the baseline's value measured in the same way, plus (for lower-is-better metrics) or
minus two standard deviations of the noise floor at the same number of images.
"""

from bench.core.errors import TuneError
from bench.tune.config import OBJECTIVES, Constraint, Trial, TuneConfig, TuneResult, parse_budget
from bench.tune.tuner import Tuner, run

__all__ = ["OBJECTIVES", "Constraint", "Trial", "TuneConfig", "TuneError", "TuneResult", "Tuner",
           "parse_budget", "run"]
