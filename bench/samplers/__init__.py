"""Samplers: background readers of memory, utilisation and power around the timed loop."""

from bench.samplers.base import Sampler, SamplerResult
from bench.samplers.cpu import CPUSampler

__all__ = ["CPUSampler", "Sampler", "SamplerResult", "make_sampler"]


def make_sampler(device: str, interval_s: float = 0.05) -> Sampler:
    """The best sampler for ``device``: NVML on NVIDIA GPUs where available, else the CPU's."""
    if device.startswith("cuda"):
        try:
            from bench.samplers.nvml import NVMLSampler

            return NVMLSampler(device, interval_s=interval_s)
        except ImportError:
            pass
    return CPUSampler(interval_s=interval_s)
