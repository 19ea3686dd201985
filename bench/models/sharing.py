"""Arms that share the loaded model's weights, and the bytes a model's weights really hold.

A full-size Flux is 34 GB in bf16; a run of five stacks cannot hold five copies. So each stack
gets its own module objects (hooks, compile wrappers and replaced submodules never leak between
stacks) while the parameter and buffer *storage* stays the loaded model's:

* :func:`shared_copy` deep-copies a model with every parameter replaced by a new
  ``nn.Parameter`` over the same storage (and every buffer by a new tensor over the same
  storage). Rebinding a tensor in the copy (``module.to(dtype)``, ``prune.remove``,
  ``quantize_``, ``layer.weight = nn.Parameter(...)``) then gives the copy new storage of its
  own and leaves the loaded model alone; only in-place writes (``copy_``, ``mul_``,
  ``load_state_dict`` into a shared module, an optimizer step) would reach the loaded model.
* :func:`versions` and :func:`written_in_place` catch those: every in-place write bumps a
  tensor's version counter, which the copy's aliases share with the loaded model's tensors.
* :func:`storages` and :func:`weight_bytes` count what a model holds, storage by storage
  (tensor subclasses such as torchao's quantized weights by their inner tensors), so shared
  storage is counted once per model and a stack's own additions can be told apart.
"""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

#: Objects a walk for modules never descends into (leaves, or too large to be worth it).
_LEAVES = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, torch.dtype,
           torch.device, type, types.ModuleType, types.FunctionType, types.MethodType,
           types.BuiltinFunctionType, functools.partial)


def modules_of(obj: Any, max_depth: int = 6, skip: Iterable[str] = ()) -> list[nn.Module]:
    """Every top-level ``nn.Module`` reachable from ``obj`` through attributes, lists, tuples
    and dicts (a module's own submodules are not listed: iterate ``module.modules()``), past
    ``obj``'s attributes named in ``skip``."""
    skipped = set(skip)
    found: list[nn.Module] = []
    seen: set[int] = set()

    def walk(value: Any, depth: int) -> None:
        if isinstance(value, _LEAVES) or id(value) in seen or depth > max_depth:
            return
        seen.add(id(value))
        if isinstance(value, nn.Module):
            found.append(value)
            return
        if isinstance(value, dict):
            children: Iterable[Any] = list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        elif hasattr(value, "__dict__"):
            children = [v for k, v in vars(value).items() if not (depth == 0 and k in skipped)]
        else:
            return
        for child in children:
            walk(child, depth + 1)

    walk(obj, 0)
    return found


def tensors_of(modules: Iterable[nn.Module]) -> Iterator[torch.Tensor]:
    """Every parameter and buffer of ``modules`` and their submodules, each object once."""
    seen: set[int] = set()
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield tensor


def shared_copy(obj: Any) -> Any:
    """A deep copy of ``obj`` whose module objects are new and whose parameters and buffers
    alias the storage of ``obj``'s (new tensor objects, same memory, same version counters)."""
    memo: dict[int, Any] = {}
    for tensor in tensors_of(modules_of(obj)):
        if isinstance(tensor, nn.Parameter):
            memo[id(tensor)] = nn.Parameter(tensor.detach(), requires_grad=tensor.requires_grad)
        else:
            memo[id(tensor)] = tensor.detach()
    return copy.deepcopy(obj, memo)


def versions(obj: Any) -> dict[int, tuple[torch.Tensor, int]]:
    """The version counter of every parameter and buffer of ``obj`` (by object id, with the
    tensor kept so that ids stay unique)."""
    out = {}
    for tensor in tensors_of(modules_of(obj)):
        try:
            out[id(tensor)] = (tensor, tensor._version)
        except RuntimeError:  # inference tensors have no version counter: nothing to compare
            continue
    return out


def version_sum(obj: Any) -> int:
    """The sum of the version counters of ``obj``'s weights: it grows with every in-place
    write to any of them."""
    total = 0
    for tensor in tensors_of(modules_of(obj)):
        try:
            total += tensor._version
        except RuntimeError:  # an inference tensor has no counter (and cannot be written)
            continue
    return total


def written_in_place(before: dict[int, tuple[torch.Tensor, int]]) -> list[str]:
    """Shapes and dtypes of the tensors of a :func:`versions` snapshot that were written in
    place since (empty when none was)."""
    changed = []
    for tensor, version in before.values():
        if tensor._version != version:
            changed.append(f"{tuple(tensor.shape)} {str(tensor.dtype).replace('torch.', '')}")
    return changed


def _leaf_tensors(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """The plain tensors holding ``tensor``'s data: itself, or a wrapper subclass's inner
    tensors (torchao's quantized weights keep ``qdata`` and ``scale``)."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        for name in names:
            inner = getattr(tensor, name)
            if isinstance(inner, torch.Tensor):
                yield from _leaf_tensors(inner)
        return
    yield tensor


def storages(obj: Any) -> dict[tuple[str, int], int]:
    """Bytes of every distinct storage the weights of ``obj`` hold, keyed by (device, address);
    tensors on the meta device hold none. Networks that only score a model's images (its
    ``scoring_attrs``, e.g. a digit classifier) are not the model's weights."""
    out: dict[tuple[str, int], int] = {}
    for tensor in tensors_of(modules_of(obj, skip=getattr(obj, "scoring_attrs", ()))):
        for leaf in _leaf_tensors(tensor):
            if leaf.device.type == "meta":
                continue
            try:
                storage = leaf.untyped_storage()
            except (RuntimeError, NotImplementedError):  # an exotic tensor: count its elements
                out[(str(leaf.device), id(leaf))] = leaf.numel() * leaf.element_size()
                continue
            out[(str(leaf.device), storage.data_ptr())] = storage.nbytes()
    return out


def weight_bytes(obj: Any) -> int:
    """Bytes held by the weights (parameters and buffers) of ``obj``, shared storage once."""
    return sum(storages(obj).values())


__all__ = ["modules_of", "shared_copy", "storages", "tensors_of", "version_sum", "versions",
           "weight_bytes", "written_in_place"]
