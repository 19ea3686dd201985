"""The shape every strategy module has: a ``Config`` dataclass and a :class:`Strategy`.

A config declares its parameters with :func:`param`, which records the help text and the
allowed values so that parsing ``name:key=value`` can check them and say what is allowed::

    @dataclass(frozen=True)
    class Config(StrategyConfig):
        n: int = param(10, "denoising steps", low=1, high=1000)

Strategies read only the model protocol in :mod:`bench.models.base`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.core.errors import StrategyError

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel



def param(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[Any, ...] | None = None,
    search: bool = True,
    below_model: str | None = None,
) -> Any:
    """A documented, range-checked config field (use as a dataclass field default).

    ``low``/``high`` or ``choices`` say what is allowed; ``accelbench tune`` searches every
    field within them unless ``search=False`` (a setup knob the search keeps at its default,
    such as a training's step count: each value would mean a new training).
    ``below_model`` names a model attribute (``steps``) that a search for speed keeps the
    field below: more denoising steps than the model's own can only be slower, and a cache
    interval or warm-up as long as the whole run leaves nothing to cache or refresh.
    """
    metadata = {"help": help, "low": low, "high": high, "choices": choices, "search": search,
                "below_model": below_model}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class StrategyConfig:
    """Base class of strategy configs: checks every field against its :func:`param` limits."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_value(type(self), f, getattr(self, f.name))

    @classmethod
    def from_params(cls, params: dict[str, str]) -> StrategyConfig:
        """Build a config from string values (as parsed from ``key=value``)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in params.items():
            if key not in fields:
                allowed = ", ".join(fields) or "none"
                raise StrategyError(f"unknown parameter {key!r}; parameters: {allowed}")
            kwargs[key] = _convert(cls, fields[key], raw)
        return cls(**kwargs)

    #: Fields always shown in the spec, even at their default (the defining knob).
    always_show: ClassVar[tuple[str, ...]] = ()

    def changed(self) -> dict[str, Any]:
        """The fields that differ from their defaults, plus those in ``always_show``."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.always_show or (
                f.default is not dataclasses.MISSING and value != f.default
            ):
                out[f.name] = value
        return out

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def describe_params(cls) -> list[str]:
        """One line per parameter: name, type, default, allowed values and help."""
        lines = []
        for f in dataclasses.fields(cls):
            meta = f.metadata
            allowed = _allowed_text(f)
            lines.append(
                f"{f.name}={f.default!r}  {meta.get('help', '')}"
                + (f" ({allowed})" if allowed else "")
            )
        return lines


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints.get(f.name, str)


def _allowed_text(f: dataclasses.Field) -> str:
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def _convert(cls: type, f: dataclasses.Field, raw: str) -> Any:
    typ = _field_type(cls, f)
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw.lower() in ("none", "null", ""):
            return None
        typ = args[0]
    try:
        if typ is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
    except ValueError:
        name = getattr(typ, "__name__", str(typ))
        raise StrategyError(
            f"parameter {f.name}={raw!r} is not a valid {name}"
            + (f"; allowed: {_allowed_text(f)}" if _allowed_text(f) else "")
        ) from None
    return raw


def _check_value(cls: type, f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    if value is None:
        return
    choices = meta.get("choices")
    if choices and value not in choices:
        raise StrategyError(
            f"parameter {f.name}={value!r} is not allowed; {_allowed_text(f)}"
        )
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (low is not None and value < low) or (high is not None and value > high):
            raise StrategyError(
                f"parameter {f.name}={value!r} is out of range; allowed: {_allowed_text(f)}"
            )


class Strategy(ABC):
    """One acceleration technique, configured.

    Class attributes a subclass sets:
        name: registry name (``bf16``, ``steps``...).
        summary: one line of help for ``accelbench list``.
        Config: its :class:`StrategyConfig` subclass.
        stage: where it goes in a stack; stacks are applied in ascending stage
            (architecture changes, then weights, precision, kernels, caching, sampling
            settings, compilation last).
        exclusive_group: strategies sharing a group cannot be stacked together
            (two precisions, two schedulers...).
        trains: True for strategies that train (their cost is reported apart).
        depends_on_activations: True for strategies whose speedup depends on the values the
            model computes, not only on its architecture and the configuration: adaptive
            skipping that decides from the activations at run time (First Block Cache's
            residual threshold) or accepts work depending on what the model predicts
            (speculative decoding's acceptance). On a random-weight architecture model
            (``model.random_weights``) such a speedup is not representative of the real
            model, and the measurement engine marks its records so. Strategies on a fixed
            schedule (every ``interval``-th step, a fixed number of merged tokens) keep the
            default, False: their work saved is the same for any weights.
        rewrites: the component roles (keys of ``model.components()``; ``"*"`` for all)
            whose weights the strategy replaces (a cast, quantization, pruning, a trained
            student, fused projections). A stack's model shares the loaded model's parameter
            storage (:func:`bench.models.sharing.shared_copy`); a strategy may rebind any
            tensor of its own stack's modules (that gives the stack new storage) but must
            never write into a tensor in place unless it made that tensor itself. The
            engine checks it, and counts ``rewrites`` in its memory estimate.
        adds_networks: True for strategies that bring networks of their own besides the
            model's (a draft model, a trained student), whose weights the stack then holds.
        saves_memory: True for memory strategies (offloading, fp8 storage) that trade
            latency for memory: a search for speed leaves them out.
        positional: the parameter whose value may come first in a spec without its key
            (``offload:group`` for ``offload:mode=group``), or None.
        screen_with: strategies whose worth shows only together with these (a scheduler
            keeps quality at fewer steps and buys nothing alone): ``accelbench tune``
            screens the pair as well as each alone.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    stage: ClassVar[int] = 50
    exclusive_group: ClassVar[str | None] = None
    trains: ClassVar[bool] = False
    depends_on_activations: ClassVar[bool] = False
    rewrites: ClassVar[tuple[str, ...]] = ()
    adds_networks: ClassVar[bool] = False
    screen_with: ClassVar[tuple[str, ...]] = ()
    saves_memory: ClassVar[bool] = False
    positional: ClassVar[str | None] = None

    # Stage constants, so modules agree on the order.
    STAGE_ARCHITECTURE: ClassVar[int] = 10
    STAGE_WEIGHTS: ClassVar[int] = 20
    STAGE_PRECISION: ClassVar[int] = 30
    STAGE_QUANTIZATION: ClassVar[int] = 40
    STAGE_KERNELS: ClassVar[int] = 50
    STAGE_CACHING: ClassVar[int] = 60
    STAGE_SAMPLING: ClassVar[int] = 70
    STAGE_COMPILE: ClassVar[int] = 90

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{self.name} expects a {self.Config.__name__}")

    @property
    def spec(self) -> str:
        """The canonical spec string: name plus the parameters that differ from defaults."""
        changed = self.config.changed()
        items = [f"{k}={v}" for k, v in sorted(changed.items()) if k != self.positional]
        if self.positional:
            items.insert(0, str(getattr(self.config, self.positional)))
        return self.name + (":" + ",".join(items) if items else "")

    def supports_device(self, device: str) -> str | None:
        """Why this strategy cannot run on ``device`` (``cpu``, ``cuda:0``), or None.

        Checked before any model loads.
        """
        return None

    def supports(self, model: ReferenceModel) -> str | None:
        """Why this strategy cannot apply to ``model``, in words, or None when it can."""
        return self.supports_device(str(model.device))

    def added_weight_bytes(self, model: ReferenceModel) -> int:
        """An upper estimate of the bytes of weight storage this strategy adds to a stack
        over the loaded model's shared weights (what the schedule's memory check counts):
        by default every byte of the components it :attr:`rewrites`, none otherwise."""
        from bench.models.sharing import weight_bytes  # lazy: keeps strategies.core.base torch-free

        return weight_bytes(list(self.rewritten(model).values()))

    def rewritten(self, model: ReferenceModel) -> dict[str, Any]:
        """The components of ``model`` this strategy rewrites, by role."""
        components = model.components()
        if "*" in self.rewrites:
            return dict(components)
        return {role: components[role] for role in self.rewrites if role in components}

    def same_as_baseline(self, model: ReferenceModel) -> str | None:
        """Why applying this strategy to ``model`` would leave its computation exactly as it
        is (the model already runs 10 steps, is already loaded in bf16), in words; None when
        it changes something. A stack all of whose strategies say so is recorded as ``same``
        with the reason, and not timed: an A/A comparison would only measure noise."""
        return None

    def incompatible_with(self, other: Strategy) -> str | None:
        """Why this strategy cannot share a stack with ``other``, or None."""
        return None

    @abstractmethod
    def apply(self, model: ReferenceModel) -> ReferenceModel:
        """Change ``model`` (in place or by returning a new one) and return it."""

    def __repr__(self) -> str:
        return f"<Strategy {self.spec}>"
