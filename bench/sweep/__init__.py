"""Sweeps: models x settings x strategy stacks, from a TOML file, run as isolated jobs.

A sweep file names models, strategy stacks and settings axes (device, batch size, steps,
resolution); every combination is a **job**. The whole sweep is expanded and validated
before any model loads: unknown models or strategies (with "did you mean"), stacks that
cannot be combined, devices this machine lacks, resolutions a model cannot generate and
step counts a model does not have are refused at once, with the reason.

What a job is (the design)
--------------------------
A speedup is only honest against a baseline measured *in the same process, on the same
device, at nearly the same time*: machines drift by tens of percent between runs minutes
apart, two processes on one GPU get different clocks, and a Ray cluster mixes machines.
And one strategy that crashes (a segfaulting kernel, an out-of-memory error, a hang) must
not take the other stacks' results with it. So:

* **one job = one (model, settings, stack)**, in its own process: a crash, an OOM kill or a
  hang (past ``timeout_s``) becomes that job's failed record, with the error (and, for a
  timeout, the limit), and the sweep goes on;
* **each job times the baseline itself, in alternation with its stack**, in the same
  process (the engine, :mod:`bench.measure.engine`, interleaves them round by round wherever both fit
  in memory, else times the baseline just before the stack and again after it), so the
  speedup stored in the job's record is against a baseline measured on the same machine, in
  the same process, in the same minutes. The reference timings travel in the record
  (``reference``). This costs one extra timed arm per job: cheap next to loading the model
  and generating the quality images;
* **the baseline itself is one job per (model, settings)**, whose record is the group's
  baseline row (with its quality, image grid, memory and energy);
* **baseline images are generated once** per (model, steps, resolution, device, quality
  images, seed) and shared through the disk cache (:mod:`bench.measure.baseline_cache`, written
  atomically): the first baseline job of that key produces them, and every other job with
  the same key waits for it to finish before it starts. On several machines the cache is
  per machine unless ``ACCELBENCH_CACHE`` points to a shared folder.

Rejected alternatives: one job per (model, settings) running every stack (one crash loses
the group, and a hang blocks it); speedups computed when gathering, against a baseline job
run elsewhere or earlier (on a cluster that baseline may come from another machine, and on
one machine from another thermal and load state).

Resume
------
Each job has a stable id: a hash of the model, the settings, the canonical stack spec and
everything that changes the measurement (timing, quality settings, seed) -- not of the
timeout, the worker count or the order of the file. Records carry it (``sweep.job_id``);
running the same sweep again skips jobs already recorded (``--retry-failed`` reruns failed
ones; the newest record of a job is the one that counts). Records are appended by the sweep
process alone, one fsynced line each (:func:`bench.core.results.append`); a torn last line left
by a kill is cut off before anything is appended, and a record a job wrote just before the
sweep was killed is picked up on the next run. See :mod:`bench.sweep.executors` for how jobs run.
"""

from bench.core.errors import SweepError
from bench.sweep.plan import Plan, import_plugins, latest, load_results, payload, validate
from bench.sweep.spec import (
    EXAMPLE,
    JOB_SCHEMA,
    Job,
    Settings,
    SweepSpec,
    load,
    parse,
    parse_resolution,
)

__all__ = ['EXAMPLE', 'SweepError', 'JOB_SCHEMA', 'Job', 'Plan', 'Settings', 'SweepSpec', 'import_plugins', 'latest', 'load', 'load_results', 'parse', 'parse_resolution', 'payload', 'validate']
