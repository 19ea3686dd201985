"""A sweep plugin for tests: strategies that fail the way real ones do, registered at import.

Used as ``plugins = ["tests.support.crashy"]`` in test sweep files; it is imported in the sweep
process (validation) and in every job process. Each strategy fails in ``apply``, after the
job's model has loaded and its baseline has been timed:

* ``test-exit``: the process exits at once (``os._exit(3)``), as a native abort would;
* ``test-segfault``: reads address 0 through ctypes: a real SIGSEGV;
* ``test-hang``: sleeps far beyond any test's time limit;
* ``test-oom``: asks torch's allocator for a petabyte: a real out-of-memory error;
* ``test-oom-kill``: SIGKILLs itself, which is what the kernel's OOM killer does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass

from strategies.core.base import Strategy, StrategyConfig
from strategies.core.registry import register


@dataclass(frozen=True)
class Config(StrategyConfig):
    """No parameters."""


class _Failing(Strategy):
    Config = Config
    stage = Strategy.STAGE_KERNELS

    def _fail(self) -> None:
        raise NotImplementedError

    def apply(self, model):
        print(f"{self.name}: failing now", flush=True)
        self._fail()
        return model


class Exit(_Failing):
    """Exits the job process with status 3."""

    name = "test-exit"
    summary = "test only: the job process exits with status 3"

    def _fail(self) -> None:
        os._exit(3)


class Segfault(_Failing):
    """Dereferences a null pointer."""

    name = "test-segfault"
    summary = "test only: a segmentation fault"

    def _fail(self) -> None:
        ctypes.string_at(0)


class Hang(_Failing):
    """Never returns (within any test)."""

    name = "test-hang"
    summary = "test only: hangs"

    def _fail(self) -> None:
        time.sleep(3600)


class OOM(_Failing):
    """Allocates far more memory than any machine has."""

    name = "test-oom"
    summary = "test only: torch cannot allocate the memory"

    def _fail(self) -> None:
        import torch

        torch.empty(2**50, dtype=torch.uint8)


class OOMKill(_Failing):
    """Is killed the way the kernel's out-of-memory killer kills."""

    name = "test-oom-kill"
    summary = "test only: SIGKILLed like the OOM killer does"

    def _fail(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


for _cls in (Exit, Segfault, Hang, OOM, OOMKill):
    register(_cls.name, _cls)
