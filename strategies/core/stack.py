"""Stacks of strategies: composed with ``+``, put in a canonical order, checked before running."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strategies.core.base import Strategy, StrategyError

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel


@dataclass(frozen=True)
class StrategyStack:
    """An ordered, compatible sequence of strategies (apply order = ascending ``stage``)."""

    strategies: tuple[Strategy, ...]

    @classmethod
    def of(cls, strategies: list[Strategy]) -> StrategyStack:
        """Normalise the order and refuse incompatible combinations, with the reason."""
        if not strategies:
            raise StrategyError("a stack needs at least one strategy")
        # Canonical: by stage, then name, so "a+b" and "b+a" are the same stack.
        ordered = sorted(strategies, key=lambda s: (s.stage, s.name))
        names = [s.name for s in ordered]
        if "baseline" in names and len(ordered) > 1:
            raise StrategyError("'baseline' stands alone: it is the reference the others beat")
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if a.name == b.name:
                    raise StrategyError(f"{a.name!r} appears twice in the stack")
                if a.exclusive_group and a.exclusive_group == b.exclusive_group:
                    raise StrategyError(
                        f"{a.spec!r} and {b.spec!r} cannot be stacked: both set the "
                        f"{a.exclusive_group}"
                    )
                reason = a.incompatible_with(b) or b.incompatible_with(a)
                if reason:
                    raise StrategyError(f"{a.spec!r} and {b.spec!r} cannot be stacked: {reason}")
        return cls(tuple(ordered))

    @property
    def spec(self) -> str:
        """Canonical spec: strategies in apply order, defaults omitted."""
        return "+".join(s.spec for s in self.strategies)

    @property
    def is_baseline(self) -> bool:
        return [s.name for s in self.strategies] == ["baseline"]

    @property
    def trains(self) -> bool:
        return any(s.trains for s in self.strategies)

    def __iter__(self) -> Iterator[Strategy]:
        return iter(self.strategies)

    def check_device(self, device: str) -> None:
        """Raise :class:`StrategyError` if any strategy cannot run on ``device``."""
        for s in self.strategies:
            reason = s.supports_device(device)
            if reason:
                raise StrategyError(f"{s.spec} cannot run on {device}: {reason}")

    def check(self, model: ReferenceModel) -> None:
        """Raise :class:`StrategyError` if any strategy cannot apply to ``model``."""
        for s in self.strategies:
            reason = s.supports(model)
            if reason:
                raise StrategyError(f"{s.spec} cannot apply to {model.name}: {reason}")

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        """Apply every strategy in order to ``model`` (which it may change in place)."""
        self.check(model)
        for s in self.strategies:
            model = s.apply(model)
            model.applied.append(s.spec)
        return model

    def config(self) -> list[dict]:
        """The resolved configuration, saved with every result."""
        return [{"name": s.name, "config": s.config.as_dict()} for s in self.strategies]
