"""The regression gate: compare a current set of measurements with a baseline and decide.

Inputs (either side) are any of:

* a run directory or ``results.jsonl`` written by ``accelbench run`` (:mod:`bench.measure.engine`);
* a pytest-benchmark JSON file (``--benchmark-json``, or a saved run from
  ``--benchmark-save`` / ``--benchmark-autosave``); the accelbench pytest plugin puts model,
  strategy, quality and their directions in each benchmark's ``extra_info``;
* a gate baseline file (``accelbench.gate-baseline/1``, written by
  ``accelbench gate ... --save-baseline FILE``), the compact form meant to be committed.

Each input becomes a list of :class:`Entry`; entries of the two sides are matched by
:attr:`Entry.key` (model, strategy and batch size, or the pytest node id for benchmarks
that are not accelbench's), and checked against :class:`Rules`:

* **latency** (``mode="absolute"``): the current median against the baseline's. A slowdown
  counts only when it is larger than ``max_slowdown`` *and* its verdict is ``slower``
  (:mod:`bench.core.compare`): two arms of one interleaved job round by round (median per-round
  ratio, its order-statistic interval and the sign test), which cancels the machine's
  drift; two separate runs through their machine-speed probes (the machine's change divided
  out); raw samples without probes with Mann-Whitney U; else non-overlapping 95% intervals
  of the median. The false discovery rate is held at ``alpha`` over every latency check
  (Benjamini-Hochberg).
* **latency** (``mode="speedup"``): each strategy's speedup over its own run's reference
  (the ``baseline`` stack measured in the same job) against the baseline's speedup. The
  ratio cancels the machine's speed, so a committed baseline holds across runners; a drop
  counts only when larger than ``max_slowdown`` and the two speedup intervals do not overlap.
* **quality**: ``metric:-1`` (at most 1 unit worse than the baseline), ``metric:+10%``
  (at most 10% worse), ``metric:0.02`` (sign left to the metric's direction), and floors or
  ceilings on the current value alone: ``metric>=0.7``, ``metric<=40``. "Worse" follows each
  metric's declared ``higher_is_better`` (``quality_meta`` in the records), never a guess.
  Quality needs no significance test: with fixed seeds it is deterministic.
* **status**: a stack that was ``ok`` in the baseline and failed or became unsupported.

The verdict: exit 0 (pass), 1 (regression), 2 (the inputs or rules cannot be used). It is a
readable table (:func:`format_table`) and a JSON document (:meth:`Verdict.as_dict`).
This module imports no torch.
"""

from bench.core.errors import GateError
from bench.core.rules import parse_fraction
from bench.gate.checks import (
    COMPARED_SETTINGS,
    DEFAULT_ALPHA,
    DEFAULT_MAX_SLOWDOWN,
    MIN_PAIRED_ROUNDS,
    Check,
    QualityRule,
    Rules,
    compare_latency,
    compare_pair,
    compare_quality,
    compare_speedup,
    settings_changes,
)
from bench.gate.entries import (
    BASELINE_SCHEMA,
    REFERENCE_STRATEGY,
    Entry,
    entries_from_records,
    entry_key,
    read_baseline_file,
    read_entries,
    read_many,
    read_pytest_benchmark,
    read_run,
    save_baseline,
)
from bench.gate.verdict import (
    EXIT_PASS,
    EXIT_REGRESSION,
    EXIT_USAGE,
    VERDICT_SCHEMA,
    Verdict,
    control_fdr,
    format_table,
    gate,
    gate_against_reference,
    gate_pairs,
    gate_paths,
    write_verdict,
)

__all__ = [
    "BASELINE_SCHEMA", "COMPARED_SETTINGS", "DEFAULT_ALPHA", "DEFAULT_MAX_SLOWDOWN", "EXIT_PASS",
    "EXIT_REGRESSION", "EXIT_USAGE", "MIN_PAIRED_ROUNDS", "REFERENCE_STRATEGY", "VERDICT_SCHEMA",
    "Check", "Entry", "GateError", "QualityRule", "Rules", "Verdict", "compare_latency",
    "compare_pair", "compare_quality", "compare_speedup", "control_fdr", "entries_from_records",
    "entry_key", "format_table", "gate", "gate_against_reference", "gate_pairs", "gate_paths",
    "parse_fraction", "read_baseline_file", "read_entries", "read_many", "read_pytest_benchmark",
    "read_run", "save_baseline", "settings_changes", "write_verdict",
]
