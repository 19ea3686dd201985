"""Acceleration techniques, one module each.

Every strategy is a :class:`Strategy` subclass with a validated ``Config`` dataclass (fields
declared with :func:`param`) and one public ``apply``. Nothing here measures: :mod:`bench`
does. Look strategies up by name with :func:`get_strategy` or parse whole stacks with
:func:`parse_stack` (``"bf16+steps:n=10"``). Import these names from ``strategies``: that is
the stable path for plugins.

Layout: :mod:`strategies.core` (the contract, the registry, stacks, and what several
strategies share: training, augmentation, the decoding-loop base), :mod:`strategies.adapters`
(what the training strategies need per model kind), :mod:`strategies.caches` (diffusers'
cache hooks, one module each), and one module per other technique.
"""

from strategies.core.base import Strategy, StrategyConfig, StrategyError, param
from strategies.core.registry import get_strategy, list_strategies, parse_stack, parse_strategy
from strategies.core.stack import StrategyStack

__all__ = [
    "Strategy",
    "StrategyConfig",
    "StrategyError",
    "StrategyStack",
    "get_strategy",
    "list_strategies",
    "param",
    "parse_stack",
    "parse_strategy",
]
