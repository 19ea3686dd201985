"""The unaccelerated model: the reference every other strategy is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from strategies.core.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class Config(StrategyConfig):
    """The baseline takes no parameters."""


class Baseline(Strategy):
    """Leave the model exactly as loaded."""

    name = "baseline"
    summary = "the model as loaded, fp32; every speedup and fidelity score is relative to it"
    Config = Config
    stage = 0

    def apply(self, model):
        return model
