"""The memory pass's garbage collection: inside ``frozen_heap`` what a run allocates is still
collected (a stack's model freed between stacks really goes), what was alive before is left
out of every collection, and everything is handed back after."""

from __future__ import annotations

import gc
import weakref

from bench.measure import footprint


class _Node:
    """An object in a reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_frozen_heap_still_collects_what_the_run_allocates():
    before = _Node()
    with footprint.frozen_heap():
        assert gc.get_freeze_count() > 0  # the objects alive at the start are set aside
        inside = _Node()
        gone = weakref.ref(inside)
        del inside
        footprint.release_memory("cpu")
        assert gone() is None  # cyclic garbage made inside is collected
        kept = weakref.ref(before)
        del before
        gc.collect()
        assert kept() is not None  # frozen: not even looked at
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert kept() is None  # handed back: collected as usual
