"""Quality metrics: fidelity to the baseline, prompt adherence, and (later) distributions."""

from bench.quality.base import METRICS, Metric, MetricInfo

__all__ = ["METRICS", "Metric", "MetricInfo"]
