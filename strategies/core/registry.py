"""Strategy names to classes, loaded lazily; outside packages add theirs by entry point.

Built-in entries are ``"module:attr"`` strings so that listing names imports nothing heavy.
Packages register more under the ``accelbench.strategies`` entry-point group::

    [project.entry-points."accelbench.strategies"]
    my-cache = "my_pkg.my_cache:MyCache"
"""

from __future__ import annotations

import difflib
import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from strategies.core.base import Strategy, StrategyError
from strategies.core.stack import StrategyStack

ENTRY_POINT_GROUP = "accelbench.strategies"

#: Built-in strategies: name -> "module:Class".
BUILTIN: dict[str, str] = {
    "baseline": "strategies.baseline:Baseline",
    "bf16": "strategies.precision:BF16",
    "fp16": "strategies.precision:FP16",
    "steps": "strategies.steps:FewerSteps",
    "scheduler": "strategies.scheduler:Scheduler",
    "quant": "strategies.quant:Quant",
    "layerwise-cast": "strategies.layerwise_cast:LayerwiseCast",
    "offload": "strategies.offload:Offload",
    "prune-magnitude": "strategies.prune_magnitude:MagnitudePrune",
    "prune-structured": "strategies.prune_structured:StructuredPrune",
    "distill": "strategies.distill:Distill",
    "fusion": "strategies.fusion:Fusion",
    "consistency": "strategies.consistency:Consistency",
    "no-kv-cache": "strategies.kv_cache:NoKVCache",
    "speculative": "strategies.speculative:Speculative",
    "zipar": "strategies.zipar:ZipAR",
    "sjd": "strategies.sjd:SJD",
    "compile": "strategies.compile:Compile",
    "channels-last": "strategies.channels_last:ChannelsLast",
    "attention": "strategies.attention:Attention",
    "fused-qkv": "strategies.fused_qkv:FusedQKV",
    "deepcache": "strategies.deepcache:DeepCache",
    "tome": "strategies.tome:ToMe",
    "fbcache": "strategies.caches.first_block:FBCache",
    "taylorseer": "strategies.caches.taylorseer:TaylorSeer",
    "pab": "strategies.caches.pyramid_broadcast:PAB",
    "fastercache": "strategies.caches.faster_cache:FasterCache",
    "cache-dit": "strategies.cache_dit:CacheDiT",
    "magcache": "strategies.caches.magcache:MagCache",
    "seacache": "strategies.caches.seacache:SeaCache",
}


#: Strategies registered at run time with :func:`register` (e.g. by a sweep's plugins).
_RUNTIME: dict[str, str] = {}


@lru_cache(maxsize=1)
def _entries() -> dict[str, str]:
    entries = {**BUILTIN, **_RUNTIME}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        entries.setdefault(ep.name, ep.value)
    return entries


def register(name: str, target: str | type[Strategy]) -> None:
    """Register a strategy at run time: ``target`` is ``"module:Class"`` or the class.

    For strategies that live in a plain module rather than an installed package (which
    would use the entry-point group): import the module where it calls ``register``, e.g.
    through a sweep's ``plugins``. The class must be importable by that path, so that
    worker processes resolve the name the same way. Names already taken are refused.
    """
    if isinstance(target, type):
        if not issubclass(target, Strategy):
            raise StrategyError(f"{target!r} is not a Strategy subclass")
        target = f"{target.__module__}:{target.__qualname__}"
    if ":" not in target:
        raise StrategyError(f"register {name!r}: target {target!r} is not 'module:Class'")
    current = _entries().get(name)
    if current is not None and current != target:
        raise StrategyError(f"strategy name {name!r} is already taken by {current}")
    _RUNTIME[name] = target
    _entries.cache_clear()


def names() -> list[str]:
    """All registered strategy names, sorted."""
    return sorted(_entries())


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name``; unknown names suggest close matches."""
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise StrategyError(
            f"unknown strategy {name!r}{hint} (run `accelbench list` to see all)"
        )
    module_name, _, attr = entries[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError(f"{entries[name]} registered as {name!r} is not a Strategy")
    return cls


def list_strategies() -> list[tuple[str, str]]:
    """(name, one-line summary) of every registered strategy."""
    out = []
    for name in names():
        try:
            out.append((name, get_strategy(name).summary))
        except Exception as exc:  # a broken plugin must not hide the others
            out.append((name, f"(cannot be loaded: {exc})"))
    return out


def parse_strategy(spec: str) -> Strategy:
    """Parse ``name`` or ``name:key=value,key=value`` into a configured strategy; a strategy
    with a :attr:`~strategies.core.base.Strategy.positional` parameter also takes its value
    first without a key (``offload:group,blocks=2`` is ``offload:mode=group,blocks=2``)."""
    spec = spec.strip()
    if not spec:
        raise StrategyError("empty strategy spec")
    name, _, rest = spec.partition(":")
    cls = get_strategy(name.strip())
    params: dict[str, str] = {}
    if rest.strip():
        for i, item in enumerate(rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq and i == 0 and cls.positional and key.strip():
                # ``offload:group,...``: the first item may be the positional parameter's value
                key, value = cls.positional, key
            elif not eq or not key.strip():
                raise StrategyError(
                    f"bad parameter {item!r} in {spec!r}; write name:key=value,key=value"
                )
            if key.strip() in params:
                raise StrategyError(f"parameter {key.strip()!r} given twice in {spec!r}")
            params[key.strip()] = value.strip()
    try:
        config = cls.Config.from_params(params)
    except StrategyError as exc:
        raise StrategyError(f"{name}: {exc}") from None
    return cls(config)


def parse_stack(spec: str) -> StrategyStack:
    """Parse ``a+b:k=v+c`` into a validated, order-normalised :class:`StrategyStack`."""
    parts = [p for p in spec.split("+")]
    if any(not p.strip() for p in parts):
        raise StrategyError(f"empty strategy in stack {spec!r}")
    return StrategyStack.of([parse_strategy(p) for p in parts])
