"""Lower-precision weights and activations: bf16 and fp16.

The model's modules are cast to the target dtype; the pipeline then runs its arithmetic in
it. Where the device has no native arithmetic for the dtype the strategy is refused with the
reason rather than silently emulated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from strategies.core.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class Config(StrategyConfig):
    """Precision strategies take no parameters: the name says the dtype."""


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is not readable)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


class _Precision(Strategy):
    dtype: torch.dtype
    stage = Strategy.STAGE_PRECISION
    exclusive_group = "precision"
    Config = Config
    rewrites = ("*",)

    def added_weight_bytes(self, model) -> int:
        """The floating-point weights again at this dtype's width."""
        from bench.models.sharing import tensors_of  # lazy: bench.models' init loads its registry

        total = 0
        for t in tensors_of(model.components().values()):
            if t.is_floating_point() and t.device.type != "meta" and t.dtype != self.dtype:
                total += t.numel() * self.dtype.itemsize
        return total

    def same_as_baseline(self, model) -> str | None:
        if model.dtype == self.dtype:
            return (f"{model.name} is already loaded in {self.name} (--dtype {self.name}): "
                    "casting it again changes nothing; load it in fp32 to measure this cast")
        return None

    def apply(self, model):
        from diffusers.utils import logging as diffusers_logging

        # diffusers warns that `.to(dtype)` bypasses per-module fp32 exceptions; casting
        # everything is exactly what this strategy measures.
        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()
        try:
            for role, module in model.components().items():
                model.set_component(role, module.to(dtype=self.dtype))
        finally:
            diffusers_logging.set_verbosity(level)
        model.dtype = self.dtype
        return model


class BF16(_Precision):
    """bfloat16: fp32's range with 8 bits of mantissa; needs no loss scaling."""

    name = "bf16"
    summary = "cast the model to bfloat16 (CUDA with bf16 support, or CPU)"
    dtype = torch.bfloat16

    def supports_device(self, device: str) -> str | None:
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                return "CUDA is not available"
            index = torch.device(device).index or 0
            if not torch.cuda.is_bf16_supported(including_emulation=False):
                name = torch.cuda.get_device_name(index)
                return f"{name} has no native bfloat16 arithmetic (needs compute capability 8.0+)"
        return None


class FP16(_Precision):
    """float16: half precision; on CPUs only where the hardware computes it natively."""

    name = "fp16"
    summary = "cast the model to float16 (CUDA, or CPUs with AVX512-FP16/AMX-FP16)"
    dtype = torch.float16

    def supports_device(self, device: str) -> str | None:
        if device.startswith("cuda"):
            return None if torch.cuda.is_available() else "CUDA is not available"
        if device == "cpu" or device.startswith("cpu"):
            flags = cpu_flags()
            if not ({"avx512_fp16", "amx_fp16"} & flags):
                return (
                    "this CPU has no native float16 arithmetic (no AVX512-FP16 or AMX-FP16), "
                    "so PyTorch would emulate it more slowly than fp32; use bf16, or a GPU"
                )
        return None
