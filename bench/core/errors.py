"""The project's errors: one base, torch-free, so every front end can tell bad input from a bug.

An :class:`AccelbenchError` is something the user can act on (a model name that does not
exist, a malformed rule, a run directory without records); its message says what to do. The
command line prints it as one line and exits 2. Any other exception is a bug of ours or of a
library: the command line prints its traceback and exits 3, so a bug never reads like a typo.

The input errors also subclass :class:`ValueError`, as they did before the hierarchy, so code
that caught ``ValueError`` around a parse keeps working.
"""

from __future__ import annotations

#: Exit status of a command that stopped on an :class:`AccelbenchError` (bad input).
EXIT_INPUT = 2
#: Exit status of a command that stopped on any other exception (a bug: traceback printed).
EXIT_BUG = 3


class AccelbenchError(Exception):
    """Base of every error the user can act on; the message says what to do."""


class ConfigError(AccelbenchError, ValueError):
    """A run, timing, quality or sweep setting that is out of range or inconsistent."""


class ModelError(AccelbenchError, ValueError):
    """A model that cannot be found or loaded."""


class StrategyError(AccelbenchError, ValueError):
    """A strategy spec that cannot be parsed, configured or applied."""


class EngineError(AccelbenchError, ValueError):
    """A run that cannot be carried out as asked (nothing to measure, an arm that failed)."""


class GateError(AccelbenchError, ValueError):
    """Gate input that cannot be judged: no records, unknown stacks, malformed rules."""


class RuleError(GateError):
    """A ``metric>=value`` rule that does not parse or names an unknown metric."""


class TuneError(AccelbenchError, ValueError):
    """A tuning request that cannot be carried out (constraints, budget, storage)."""


class SweepError(AccelbenchError, ValueError):
    """A sweep file that does not validate."""


class ReportError(AccelbenchError, ValueError):
    """Report input without anything to show."""


class RecordError(AccelbenchError, ValueError):
    """A results file or record that cannot be read."""


class HistoryError(AccelbenchError, ValueError):
    """A history store that cannot be opened or read, or input it cannot file."""


__all__ = [
    "EXIT_BUG",
    "EXIT_INPUT",
    "AccelbenchError",
    "ConfigError",
    "EngineError",
    "GateError",
    "HistoryError",
    "ModelError",
    "RecordError",
    "ReportError",
    "RuleError",
    "StrategyError",
    "SweepError",
    "TuneError",
]
