"""The report's figures, drawn with seaborn and matplotlib and returned as embedded PNGs.

One module per figure family: :mod:`~reports.plots.frontier` (Pareto plots),
:mod:`~reports.plots.speed` (speedup and latency, change between runs),
:mod:`~reports.plots.steps` (per-step latency), :mod:`~reports.plots.timeline` (sampler
series), :mod:`~reports.plots.trend` (a history series with its change points);
:mod:`~reports.plots.style` holds what they share (colours, style, PNG encoding).
Plotting libraries load on the first figure drawn. Nothing here imports torch.
"""

from __future__ import annotations

from reports.plots.frontier import pareto_plot, pareto_points
from reports.plots.speed import comparison_plot, speed_plot
from reports.plots.steps import step_plot
from reports.plots.style import DOMINATED_COLOR, FRONT_COLOR, Plot, fmt_value, short
from reports.plots.timeline import timeline_plot
from reports.plots.trend import trend_plot

__all__ = [
    "DOMINATED_COLOR",
    "FRONT_COLOR",
    "Plot",
    "comparison_plot",
    "fmt_value",
    "pareto_plot",
    "pareto_points",
    "short",
    "speed_plot",
    "step_plot",
    "timeline_plot",
    "trend_plot",
]
