"""Quality metrics: fidelity to the baseline, prompt adherence, distributions against real images."""

from bench.core.metrics import METRICS, MetricInfo

__all__ = ["METRICS", "MetricInfo"]
