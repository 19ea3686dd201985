"""The search space of ``accelbench tune``, derived from the strategy registry alone.

Nothing about the space is written twice: every registered strategy that supports the model
contributes, and every field of its ``Config`` declared with ``strategies.param`` becomes a
dimension within its declared range or choices (ints and floats whose range spans two
decades or more are searched on a log scale), except fields declared ``search=False``
(setup knobs such as a training's step count) and fields that cannot be searched (a string
without choices, an unbounded range), which keep their defaults.

Strategies that share an ``exclusive_group`` (two precisions, two schedulers) become one
categorical choice among them and ``none``, so such stacks are never proposed; the other
strategies are each on or off. A proposal that still cannot be stacked (a strategy's own
``incompatible_with``) is rejected before anything is measured, with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.core.record import REFERENCE
from strategies import StrategyError, StrategyStack, get_strategy
from strategies.core.registry import names

NONE = "none"


@dataclass(frozen=True)
class Dimension:
    """One searchable parameter of one strategy.

    Attributes:
        strategy: the strategy's registry name.
        name: the ``Config`` field.
        kind: ``int``, ``float``, ``bool`` or ``categorical``.
        low, high: the range (numbers).
        choices: the values (categorical).
        log: search the range on a log scale.
        default: the field's default.
    """

    strategy: str
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False
    default: Any = None

    @property
    def key(self) -> str:
        """The trial parameter's name: ``strategy.field``."""
        return f"{self.strategy}.{self.name}"

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna ``trial``."""
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)
        if self.kind == "bool":
            return trial.suggest_categorical(self.key, [False, True])
        return trial.suggest_categorical(self.key, list(self.choices))


@dataclass
class SearchSpace:
    """What the search may combine for one model.

    Attributes:
        groups: exclusive group -> its strategies (one of them or none per proposal).
        toggles: strategies that are each on or off.
        dimensions: strategy -> its searchable parameters.
        excluded: strategy -> why it is not in the space (unsupported by the model, training
            not allowed...).
        fixed: ``strategy.field`` -> why that field keeps its default.
        bounded: ``strategy.field`` -> the narrower range a search for speed uses, and why.
    """

    groups: dict[str, list[str]] = field(default_factory=dict)
    toggles: list[str] = field(default_factory=list)
    dimensions: dict[str, list[Dimension]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    #: ``strategy.field`` -> the range a search for speed keeps it in, and why.
    bounded: dict[str, str] = field(default_factory=dict)
    #: The model's device: a proposal holding a strategy that cannot run there is refused.
    device: str = "cpu"

    @property
    def strategies(self) -> list[str]:
        return [s for members in self.groups.values() for s in members] + list(self.toggles)

    def describe(self) -> dict[str, Any]:
        """The space as plain data (saved with the study)."""
        return {
            "groups": self.groups,
            "toggles": self.toggles,
            "dimensions": {s: [dataclasses.asdict(d) for d in dims] for s, dims in self.dimensions.items()},
            "excluded": self.excluded,
            "fixed": self.fixed,
            "bounded": self.bounded,
        }


class Incompatible(ValueError):
    """A proposed combination that cannot be stacked; the message says why."""


def _field_type(config_cls: type, f: dataclasses.Field) -> tuple[Any, bool]:
    """(the field's base type, whether None is allowed)."""
    typ = typing.get_type_hints(config_cls).get(f.name, str)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return typ, False


def dimension(strategy: str, config_cls: type, f: dataclasses.Field) -> Dimension | str:
    """The dimension of one ``Config`` field, or why the field is not searched."""
    meta = f.metadata
    if not meta.get("search", True):
        return "declared search=False (a setup knob)"
    typ, optional = _field_type(config_cls, f)
    choices = meta.get("choices")
    default = f.default if f.default is not dataclasses.MISSING else None
    if choices:
        return Dimension(strategy, f.name, "categorical", choices=tuple(choices), default=default)
    if typ is bool:
        if optional:  # None usually means "let the library decide": one more choice
            return Dimension(strategy, f.name, "categorical", choices=(None, False, True), default=default)
        return Dimension(strategy, f.name, "bool", default=default)
    low, high = meta.get("low"), meta.get("high")
    if typ in (int, float):
        if low is None or high is None:
            return "no declared range to search within"
        log = low > 0 and high / low >= 100
        if typ is int and low <= 0 and high >= 100:  # a count from 0: search 1.. on a log scale
            low, log = 1, True
        return Dimension(strategy, f.name, typ.__name__, low=low, high=high, log=log, default=default)
    return "free text without declared choices"


def _below_model(dim: Dimension, f: dataclasses.Field, model: Any) -> tuple[Dimension, str] | None:
    """``dim`` bounded below the model's own value of the attribute its field names
    (``below_model``), with the reason; None where the field names none or the model has none."""
    attr = f.metadata.get("below_model")
    own = getattr(model, attr, None) if attr else None
    if not isinstance(own, int) or dim.high is None or own - 1 >= dim.high:
        return None
    high = max(int(dim.low or 1), own - 1)
    log = dim.low is not None and dim.low > 0 and high / dim.low >= 100
    why = (f"{dim.low:g}..{high}: below the model's own {own} {attr} (a step count at or above "
           f"it is no faster, an interval or warm-up that long leaves nothing to cache; declared "
           f"{dim.low:g}..{dim.high:g})")
    return dataclasses.replace(dim, high=high, log=log), why


def derive(model: Any, *, allow_training: bool = False, only: Sequence[str] | None = None,
           for_speed: bool = False) -> SearchSpace:
    """The space for ``model``: every registered strategy (or ``only`` those) that supports it.

    Strategies that train join only with ``allow_training`` (each configuration trains once,
    minutes to an hour on a CPU, cached after). ``for_speed`` (a latency or energy objective)
    keeps fields declared ``below_model`` under the model's own value: a step count above
    the model's own can only be slower (the search drew 652 of 1-1000 for a 25-step model).
    """

    space = SearchSpace(device=str(getattr(model, "device", "cpu")))
    wanted = list(only) if only else [n for n in names() if n != REFERENCE]
    for name in wanted:
        cls = get_strategy(name)
        if cls.trains and not allow_training:
            space.excluded[name] = "trains (add --allow-training; each configuration trains once)"
            continue
        if cls.saves_memory and for_speed:
            space.excluded[name] = ("trades latency for memory: it makes no call faster, so a "
                                    "search for speed leaves it out")
            continue
        try:
            reason = cls().supports(model)
        except Exception as exc:  # noqa: BLE001 - a plugin's broken check excludes only itself
            reason = f"its support check failed: {type(exc).__name__}: {exc}"
        if reason:
            space.excluded[name] = reason
            continue
        dims = []
        for f in dataclasses.fields(cls.Config):
            got = dimension(name, cls.Config, f)
            if isinstance(got, Dimension) and for_speed and (bounded := _below_model(got, f, model)):
                got, why = bounded
                space.bounded[got.key] = why
            if isinstance(got, Dimension):
                dims.append(got)
            else:
                space.fixed[f"{name}.{f.name}"] = got
        space.dimensions[name] = dims
        if cls.exclusive_group:
            space.groups.setdefault(cls.exclusive_group, []).append(name)
        else:
            space.toggles.append(name)
    return space


def propose(trial: Any, space: SearchSpace) -> str:
    """Ask ``trial`` for a combination and return its canonical stack spec (``baseline`` when
    nothing is on). Raises :class:`Incompatible` for a combination that cannot be stacked."""

    chosen: list[str] = []
    for group, members in sorted(space.groups.items()):
        pick = trial.suggest_categorical(f"group.{group}", [NONE, *members])
        if pick != NONE:
            chosen.append(pick)
    for name in space.toggles:
        if trial.suggest_categorical(f"use.{name}", [False, True]):
            chosen.append(name)
    if not chosen:
        return REFERENCE
    strategies = []
    for name in chosen:
        cls = get_strategy(name)
        values = {d.name: d.suggest(trial) for d in space.dimensions.get(name, [])}
        try:
            strategies.append(cls(cls.Config(**values)))
        except StrategyError as exc:  # a combination of values the config itself refuses
            raise Incompatible(f"{name}: {exc}") from None
    try:
        stack = StrategyStack.of(strategies)
        stack.check_device(space.device)  # a choice such as compile's reduce-overhead needs CUDA
    except StrategyError as exc:
        raise Incompatible(str(exc)) from None
    return stack.spec


def singles(space: SearchSpace) -> list[dict[str, Any]]:
    """Trial parameters of every strategy of ``space`` alone at its defaults (for Optuna's
    ``enqueue_trial``): its group or toggle on, every other off; then every pair a strategy
    declares with ``screen_with`` (a scheduler with the step count), both at their defaults."""

    names = [[n] for n in space.strategies]
    names += [[n, other] for n in space.strategies for other in get_strategy(n).screen_with
              if other in space.strategies]
    return [_at_defaults(space, chosen) for chosen in names]


def _at_defaults(space: SearchSpace, chosen: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {f"group.{g}": NONE for g in space.groups}
    params.update({f"use.{t}": False for t in space.toggles})
    for name in chosen:
        group = next((g for g, members in space.groups.items() if name in members), None)
        if group is not None:
            params[f"group.{group}"] = name
        else:
            params[f"use.{name}"] = True
        for d in space.dimensions.get(name, []):
            value = d.default
            if d.kind in ("int", "float") and value is not None:  # inside a bounded range
                value = type(value)(min(max(value, d.low), d.high))
            elif (d.kind == "categorical" and value not in d.choices) or value is None:
                continue  # a default the search cannot name ("auto"): the sampler picks
            params[d.key] = value
    return params


def size(space: SearchSpace) -> str:
    """How big the space is, in words."""
    n_dims = sum(len(d) for d in space.dimensions.values())
    combos = math.prod(len(m) + 1 for m in space.groups.values()) * 2 ** len(space.toggles)
    return (f"{len(space.strategies)} strategies ({len(space.groups)} exclusive groups, "
            f"{len(space.toggles)} on/off), {n_dims} parameters, {combos} combinations of strategies")


__all__ = ["NONE", "Dimension", "Incompatible", "SearchSpace", "derive", "dimension", "propose", "singles",
           "size"]
