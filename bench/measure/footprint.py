"""Memory per stack, true under every schedule: the bytes its weights hold, and the peak of
one call it makes alone.

Stacks share the loaded model's weights (:mod:`bench.models.sharing`), and under interleaving
every stack's model is resident at once, so neither the process's RSS nor the allocator's
peak during the run says what one stack needs. This module measures it in parts:

* **weights**: the bytes of the parameters and buffers the stack's model holds, shared storage
  counted once per stack (:func:`bench.models.sharing.weight_bytes`); of them, those it adds
  over the loaded model (storage the loaded model does not hold).
* **activations**: one call of that stack alone, after the timed schedule (a short exclusive
  pass): on CUDA the allocator's peak over what was allocated before the call; on the CPU the
  growth of the process's resident memory over what it held before the call (the kernel's
  high-water mark, reset before the call; freed heap memory is handed back first so that the
  call's own allocations show).
* **peak** = weights + activations: what a process running this stack alone holds at its
  highest, beyond the runtime itself.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.measure.harness import synchronize
from bench.models.sharing import storages

MiB = 2**20


def release_memory(device: str) -> None:
    """Hand freed memory back: Python's garbage, glibc's free heap, CUDA's cached blocks."""
    import torch

    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    _malloc_trim()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Run the block with the objects alive now set aside from garbage collection
    (``gc.freeze``), and hand them back after it (``gc.unfreeze``).

    What the block allocates is still collected, and every :func:`release_memory` inside it
    stays a full collection of it; it only stops re-scanning the millions of objects the
    imported libraries hold, which cost 0.25 s per collection on a 2-core CPU with torch,
    transformers and diffusers loaded (two collections per measured stack)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_hwm() -> str | None:
    """Reset the kernel's peak-RSS mark of this process; the reason where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        return f"the kernel's peak-RSS mark cannot be reset here ({exc})"
    return None


def call_peak(call: Callable[[], Any], device: str) -> dict[str, Any]:
    """Run ``call`` once and measure the memory it takes beyond what was held before it.

    Returns ``activations_mb`` (None with ``reason`` where it cannot be read) and ``method``.
    """
    import torch


    dev = torch.device(device)
    release_memory(device)
    if dev.type == "cuda":
        synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        call()
        synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        return {"activations_mb": (peak - before) / MiB,
                "method": "CUDA allocator peak during one call of this stack alone, over what "
                          "was allocated before it"}
    reason = _reset_hwm()
    before_kb = _status_kb("VmRSS")
    if reason is None and before_kb is not None:
        call()
        hwm_kb = _status_kb("VmHWM")
        if hwm_kb is not None:
            return {"activations_mb": max(hwm_kb - before_kb, 0) / 1024,
                    "method": "growth of the process's resident memory during one call of this "
                              "stack alone (the kernel's high-water mark, reset before it)"}
        reason = "/proc/self/status has no VmHWM"
    return {"activations_mb": None, "reason": reason or "/proc/self/status is not readable",
            "method": "unavailable"}


def stack_memory(model: Any, shared: dict[tuple[str, int], int], call: Callable[[], Any] | None,
                 device: str) -> dict[str, Any]:
    """The memory fields of one stack's record: ``weights_mb``, ``added_mb`` (its storage
    that the loaded model, whose storages are ``shared``, does not hold), ``activations_mb``
    and ``peak_mb`` from one exclusive ``call`` (None: not measured, with the reason)."""

    own = storages(model)
    out: dict[str, Any] = {
        "weights_mb": sum(own.values()) / MiB,
        "added_mb": sum(n for key, n in own.items() if key not in shared) / MiB,
        "shared_mb": sum(n for key, n in own.items() if key in shared) / MiB,
    }
    if call is None:
        out.update(activations_mb=None, peak_mb=None, method="unavailable",
                   reason="no call was made alone (nothing was timed)")
        return out
    out.update(call_peak(call, device))
    act = out.get("activations_mb")
    out["peak_mb"] = out["weights_mb"] + act if act is not None else None
    return out


def process_rss_mb() -> float | None:
    """The process's resident memory now, in MiB (None where /proc is not readable)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


def peak_rss_mb() -> float | None:
    """The process's peak resident memory since it started or the mark was last reset."""
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else None


__all__ = ["call_peak", "frozen_heap", "peak_rss_mb", "process_rss_mb", "release_memory", "stack_memory"]
