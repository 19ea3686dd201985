"""A fake of the nvidia-ml-py (``pynvml``) calls the NVML sampler uses, so CI exercises the
GPU code path on machines without a GPU.

It behaves like a driver would: power is constant per GPU until ``set_power`` changes it,
the total-energy counter integrates it over real time (and wraps at 2**64 like the real
unsigned counter), memory
and process lists are plain numbers the test may change while sampling runs. Faults are
scripted per GPU: calls that are unsupported or denied, a call that starts failing after a
number of successes, or the whole GPU lost after some seconds (the driver failing mid-run).

Instances pickle, so a sampler in process mode can carry one into its child process.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Like ``pynvml.NVMLError``: carries the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _STRINGS.get(self.value, f"NVML error {self.value}")


@dataclass
class FakeGPU:
    """One scripted GPU.

    Attributes:
        power_w: constant board power.
        energy_start_mj: the energy counter's value at ``nvmlInit`` (near 2**64 to wrap).
        unsupported: call names that answer NOT_SUPPORTED ("instant_power" for the field).
        denied: call names that answer NO_PERMISSION.
        fail_after: call name -> successful calls before it fails with UNKNOWN every time.
        lost_after_s: seconds after ``nvmlInit`` when the GPU is lost (every call fails).
        proc_mem: pid -> bytes of device memory that process uses.
    """

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    architecture: int = 9  # Hopper
    power_w: float = 300.0
    power_limit_w: float = 700.0
    energy_start_mj: int = 123_456_789
    memory_total: int = 80 * 2**30
    mem_used: int = 10 * 2**30
    proc_mem: dict[int, int] = field(default_factory=dict)
    util_gpu: int = 97
    util_mem: int = 40
    temperature_c: int = 55
    sm_clock_mhz: int = 1980
    throttle: int = 0x4  # sw_power_cap
    unsupported: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    fail_after: dict[str, int] = field(default_factory=dict)
    lost_after_s: float | None = None


class FakeNVML:
    """Module-like object with the pynvml functions and constants the sampler calls.

    Args:
        gpus: the machine's GPUs, in NVML (PCI) order.
        init_error: NVML return code ``nvmlInit`` fails with (e.g. library not found).
    """

    NVMLError = NVMLError
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(self, gpus: list[FakeGPU] | None = None, init_error: int | None = None) -> None:
        self.gpus = gpus if gpus is not None else [FakeGPU()]
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self._t0: float | None = None
        self._energy: list[tuple[int, float]] = []  # per GPU: (mJ accrued, since when)

    def set_power(self, index: int, watts: float) -> None:
        """Change a GPU's power from now on; the energy counter keeps integrating exactly."""
        if self._t0 is not None:
            self._energy[index] = (self._energy_mj(index, time.perf_counter()), time.perf_counter())
        self.gpus[index].power_w = watts

    def _energy_mj(self, index: int, now: float) -> int:
        accrued, since = self._energy[index]  # integers: exact near 2**64
        return accrued + int(self.gpus[index].power_w * (now - since) * 1000)

    # -- plumbing ----------------------------------------------------------------------
    def _check(self, call: str, handle: Any = None) -> FakeGPU | None:
        self.calls[call] += 1
        if self._t0 is None:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None
        gpu = self.gpus[handle.index]
        if gpu.lost_after_s is not None and time.perf_counter() - self._t0 >= gpu.lost_after_s:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if call in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if call in gpu.denied:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        limit = gpu.fail_after.get(call)
        if limit is not None and self.calls[(call, handle.index)] >= limit:
            raise NVMLError(NVML_ERROR_UNKNOWN)
        self.calls[(call, handle.index)] += 1
        return gpu

    # -- lifecycle ---------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self._t0 = time.perf_counter()
        self._energy = [(int(g.energy_start_mj), self._t0) for g in self.gpus]

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self._t0 = None

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimpleNamespace:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)  # invalid argument
        return SimpleNamespace(index=index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> SimpleNamespace:
        self._check("nvmlDeviceGetHandleByUUID")
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for i, gpu in enumerate(self.gpus):
            if gpu.uuid == uuid:
                return SimpleNamespace(index=i)
        raise NVMLError(6)  # not found

    # -- static facts ------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._check("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._check("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetArchitecture(self, handle: Any) -> int:
        return self._check("nvmlDeviceGetArchitecture", handle).architecture

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return int(self._check("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_w * 1000)

    # -- readings ----------------------------------------------------------------------
    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: list[int]) -> list[SimpleNamespace]:
        gpu = self._check("nvmlDeviceGetFieldValues", handle)
        out = []
        for fid in field_ids:
            ok = fid == self.NVML_FI_DEV_POWER_INSTANT and "instant_power" not in gpu.unsupported
            out.append(
                SimpleNamespace(
                    fieldId=fid,
                    scopeId=0,
                    timestamp=int(time.time() * 1e6),
                    latencyUsec=0,
                    valueType=1,  # unsigned int
                    nvmlReturn=NVML_SUCCESS if ok else NVML_ERROR_NOT_SUPPORTED,
                    value=SimpleNamespace(uiVal=int(gpu.power_w * 1000) if ok else 0),
                )
            )
        return out

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return int(self._check("nvmlDeviceGetPowerUsage", handle).power_w * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._check("nvmlDeviceGetTotalEnergyConsumption", handle)
        return self._energy_mj(handle.index, time.perf_counter()) % 2**64

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> SimpleNamespace:
        gpu = self._check("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(total=gpu.memory_total, used=gpu.mem_used, free=gpu.memory_total - gpu.mem_used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[SimpleNamespace]:
        gpu = self._check("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.proc_mem.items()]

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> SimpleNamespace:
        gpu = self._check("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return self._check("nvmlDeviceGetTemperature", handle).temperature_c

    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        return self._check("nvmlDeviceGetClockInfo", handle).sm_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._check("nvmlDeviceGetCurrentClocksEventReasons", handle).throttle


__all__ = ["FakeGPU", "FakeNVML", "NVMLError"]
