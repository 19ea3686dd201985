"""accelbench: measure what acceleration techniques buy for image-generation models.

The harness lives here (CLI, model zoo, hot loop, samplers, quality metrics, statistics,
results); techniques live in :mod:`strategies`; the HTML report in :mod:`reports`.
Importing this package is cheap: torch and friends load only when a model is used.
"""

__version__ = "0.1.0"

from bench.measure.quiet import silence_known_noise as _silence_known_noise  # noqa: E402

_silence_known_noise()
