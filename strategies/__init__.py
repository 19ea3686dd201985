"""Acceleration techniques, one module each.

Every strategy is a :class:`strategies.base.Strategy` subclass with a validated ``Config``
dataclass and one public ``apply``. Nothing here measures: :mod:`bench` does. Look strategies
up by name with :func:`strategies.registry.get_strategy` or parse whole stacks with
:func:`strategies.registry.parse_stack` (``"bf16+steps:n=10"``).
"""

from strategies.base import Strategy, StrategyConfig, StrategyError, param
from strategies.registry import get_strategy, list_strategies, parse_stack, parse_strategy
from strategies.stack import StrategyStack

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
