"""Samplers: background readers of memory, utilisation, power and energy around the timed loop.

``make_sampler(device)`` picks the right one: :class:`~bench.measure.samplers.nvml.NVMLSampler` for
CUDA devices (which also reads everything the CPU sampler reads, and degrades to those
readings, saying why, when NVML is missing or fails), :class:`CPUSampler` otherwise.
"""

from collections.abc import Sequence

from bench.core.config import SAMPLE_INTERVAL_S
from bench.measure.samplers.base import Sampler, SamplerResult
from bench.measure.samplers.cpu import CPUSampler
from bench.measure.samplers.nvml import NVMLSampler

__all__ = ["CPUSampler", "NVMLSampler", "Sampler", "SamplerResult", "make_sampler"]

#: Default polling interval (seconds); the protocol asks for at most 50 ms.
DEFAULT_INTERVAL_S = SAMPLE_INTERVAL_S


def make_sampler(
    device: str,
    interval_s: float = DEFAULT_INTERVAL_S,
    gpus: Sequence[int] | None = None,
    mode: str = "thread",
) -> Sampler:
    """The best sampler for ``device``: NVML on CUDA devices, else the CPU's.

    Args:
        device: the run's device (``cpu``, ``cuda``, ``cuda:1``...).
        interval_s: polling period in seconds.
        gpus: CUDA ordinals the model uses (default: ``device``'s); each one is sampled.
        mode: ``thread`` (default: measured to disturb the loop least) or ``process``.
    """
    if device.startswith("cuda"):
        return NVMLSampler(device, interval_s=interval_s, gpus=gpus, mode=mode)
    return CPUSampler(interval_s=interval_s, mode=mode)
