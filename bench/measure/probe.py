"""The machine-speed probe: a short fixed workload timed in alternation with a run's calls.

The calls of one run are not independent samples of the machine's speed across runs: on a
shared machine two identical runs a minute apart differed by a third in median latency. So
every run also times this probe, once per round (interleaved) or per call (sequential),
between calls and outside their timed windows. Two separate runs are then compared with the
probe's change divided out (:func:`bench.core.stats.probe_corrected_speedup`): when the machine was
27% slower during the current run, so was the probe.

The workload is a few matrix products and a memory copy on the run's device, sized to take a
few milliseconds: compute and memory bandwidth, what a generation call spends its time on.
"""

from __future__ import annotations

import time
from typing import Any

from bench.core import stats
from bench.measure.harness import synchronize

#: What the probe does, recorded with its samples.
DESCRIPTION = ("machine-speed probe: 4 products of 256x256 float32 matrices and a 4 MiB copy "
               "on the run's device, timed once per round between calls")


class Probe:
    """The probe on ``device``; :meth:`run` times one pass in seconds."""

    def __init__(self, device: str) -> None:
        import torch

        self.device = torch.device(device)
        generator = torch.Generator().manual_seed(0)
        self.a = torch.randn(256, 256, generator=generator).to(self.device)
        self.b = torch.randn(256, 256, generator=generator).to(self.device)
        self.src = torch.randn(1 << 20, generator=generator).to(self.device)
        self.dst = torch.empty_like(self.src)
        self.samples_s: list[float] = []
        self.run()  # first-use costs (allocator, kernels) stay out of the samples
        self.samples_s.clear()

    def run(self) -> float:
        """One timed pass of the workload (the device synchronised at both ends)."""
        import torch


        synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            x = self.a
            for _ in range(4):
                x = torch.mm(x, self.b).tanh_()
            self.dst.copy_(self.src)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        self.samples_s.append(seconds)
        return seconds

    def as_dict(self) -> dict[str, Any]:
        """The samples so far, their median in ms, and what the probe is."""

        median = stats.summarize(self.samples_s).median * 1000 if self.samples_s else None
        return {"latencies_s": list(self.samples_s), "median_ms": median,
                "method": DESCRIPTION, "device": str(self.device)}


__all__ = ["DESCRIPTION", "Probe"]
