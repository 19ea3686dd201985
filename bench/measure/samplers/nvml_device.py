"""One GPU through NVML: NVML's error codes and throttle reasons, finding the handle of a
CUDA device, its static facts, and probing which fields it answers.

The sampler (:mod:`bench.measure.samplers.nvml`) calls these in its polling context with
the NVML binding it loaded (``pynvml`` or the tests' fake); none of them raises for an
NVML failure: each says why in what it returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.measure.samplers.cpu import MB
from bench.measure.samplers.timeseries import Counter

# NVML return codes (stable across versions of the C API).
NOT_SUPPORTED = 3
NO_PERMISSION = 4
FUNCTION_NOT_FOUND = 13
#: Errors after which a device answers nothing more: stop asking it.
FATAL = {1, 9, 15, 16, 18, 28}  # uninitialized, driver not loaded, GPU lost, reset required,
# library/driver version mismatch, GPU not found

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
ARCH_AMPERE = 7  # NVML_DEVICE_ARCH_AMPERE
#: Seconds ``nvmlDeviceGetPowerUsage`` averages over where NVML documents it as an average.
AVERAGED_POWER_S = 1.0
ENERGY_MODULUS = 2**64  # the counter is an unsigned 64-bit count of millijoules
#: Largest believable counter step between two readings: 10 kW for an hour, in mJ. A larger
#: "wrapped" step means the counter restarted (a driver reload), not that it wrapped.
ENERGY_MAX_STEP_MJ = 10_000 * 3600 * 1000
#: Consecutive failures after which a non-fatal field is given up.
MAX_ERRORS = 3

THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_throttle(mask: int) -> list[str]:
    """Names of the clock-event (throttle) reasons set in ``mask``."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    return names + ([f"0x{unknown:x}"] if unknown else [])


def describe_error(exc: BaseException) -> str:
    """An NVML error as words, with its code where there is one."""
    code = getattr(exc, "value", None)
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ itself calls NVML
        text = ""
    text = text or type(exc).__name__
    if code == NO_PERMISSION:
        text += " (permission denied)"
    return f"{text} [NVML error {code}]" if isinstance(code, int) else text


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_ordinal(device: str) -> int:
    """``cuda`` -> 0, ``cuda:3`` -> 3."""
    _, _, index = device.partition(":")
    if not index:
        return 0
    if not index.isdigit():
        raise ValueError(f"not a CUDA device: {device!r}")
    return int(index)


def _field_value(v: Any) -> float:
    """The number in an ``nvmlFieldValue_t`` according to its ``valueType``."""
    kind = int(getattr(v, "valueType", 1))
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return float(getattr(v.value, attr.get(kind, "uiVal")))


@dataclass
class DeviceField:
    """One NVML reading of a device, producing one or more columns."""

    name: str
    read: Callable[[], dict[str, float]]
    columns: tuple[str, ...]
    errors: int = 0


@dataclass
class Device:
    """A sampled GPU: its CUDA ordinal, NVML handle and live fields."""

    ordinal: int
    handle: Any
    info: dict[str, Any]
    fields: dict[str, DeviceField] = field(default_factory=dict)
    proc_seen: bool = False
    counter: Counter | None = None

    @property
    def prefix(self) -> str:
        return f"gpu{self.ordinal}."



def resolve(nv: Any, ordinal: int, count: int, uuid: str | None) -> tuple[Any, str]:
    """The NVML handle of CUDA device ``ordinal`` and how it was found (or None, why).

    ``uuid`` is the device's UUID as torch reports it, when known; otherwise
    ``CUDA_VISIBLE_DEVICES`` maps the ordinal, else NVML's index order is assumed.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if uuid:
        handle = by_uuid(nv, uuid, count)
        if handle is not None:
            return handle, f"by UUID {uuid} (from torch)"
    try:
        if visible is not None and visible.strip():
            entries = [e.strip() for e in visible.split(",") if e.strip()]
            if ordinal >= len(entries):
                return None, f"cuda:{ordinal} is not in CUDA_VISIBLE_DEVICES={visible!r}"
            entry = entries[ordinal]
            if entry.isdigit():
                return (
                    nv.nvmlDeviceGetHandleByIndex(int(entry)),
                    f"NVML index {entry} from CUDA_VISIBLE_DEVICES",
                )
            handle = by_uuid(nv, entry, count)
            if handle is None:
                return None, f"no GPU with UUID {entry} (CUDA_VISIBLE_DEVICES={visible!r})"
            return handle, f"by UUID {entry} from CUDA_VISIBLE_DEVICES"
        if ordinal >= count:
            return None, f"cuda:{ordinal} does not exist: NVML sees {count} GPU(s)"
        note = (
            "" if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"
            else " (assumes CUDA's order matches NVML's PCI order; set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure)"
        )
        return nv.nvmlDeviceGetHandleByIndex(ordinal), f"NVML index {ordinal}{note}"
    except Exception as exc:
        return None, f"no NVML handle for cuda:{ordinal}: {describe_error(exc)}"


def by_uuid(nv: Any, uuid: str, count: int) -> Any:
    """The handle of the GPU whose UUID is ``uuid`` or starts with it (CUDA accepts
    abbreviated UUIDs, NVML does not); None if there is none."""
    try:
        return nv.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        pass
    for index in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            if _text(nv.nvmlDeviceGetUUID(handle)).startswith(uuid):
                return handle
        except Exception:
            continue
    return None


def describe(nv: Any, dev: Device) -> None:
    """Static facts into ``dev.info``: name, UUID, architecture, power limit, memory size."""
    h = dev.handle
    reads = {
        "name": lambda: _text(nv.nvmlDeviceGetName(h)),
        "uuid": lambda: _text(nv.nvmlDeviceGetUUID(h)),
        "architecture": lambda: int(nv.nvmlDeviceGetArchitecture(h)),
        "power_limit_w": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
        "memory_total_mb": lambda: nv.nvmlDeviceGetMemoryInfo(h).total / MB,
    }
    for key, read in reads.items():
        try:
            dev.info[key] = read()
        except Exception as exc:
            dev.info[key] = None
            dev.info.setdefault("unreadable", {})[key] = describe_error(exc)


def probe(nv: Any, dev: Device, pid: int) -> dict[str, str]:
    """Try every field once and keep in ``dev.fields`` those that answer; returns why the
    others do not (``gpu<k>.<field>`` -> reason)."""
    h = dev.handle
    field_id = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", FIELD_POWER_INSTANT)

    def instant_power() -> dict[str, float]:
        (value,) = nv.nvmlDeviceGetFieldValues(h, [field_id])
        ret = int(getattr(value, "nvmlReturn", 0))
        if ret != 0:
            raise nv.NVMLError(ret)
        return {"power_w": _field_value(value) / 1000}

    def average_power() -> dict[str, float]:
        return {"power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000}

    counter = Counter(scale=1e-3, modulus=ENERGY_MODULUS, max_step=ENERGY_MAX_STEP_MJ)
    dev.counter = counter

    def energy() -> dict[str, float]:
        return {"energy_j": counter.update(nv.nvmlDeviceGetTotalEnergyConsumption(h))}

    def memory() -> dict[str, float]:
        return {"mem_used_mb": nv.nvmlDeviceGetMemoryInfo(h).used / MB}

    def process_memory() -> dict[str, float]:
        for proc in nv.nvmlDeviceGetComputeRunningProcesses(h):
            if int(proc.pid) == pid:
                dev.proc_seen = True
                used = getattr(proc, "usedGpuMemory", None)
                return {"proc_mem_mb": used / MB if used is not None else math.nan}
        return {"proc_mem_mb": math.nan}

    def utilization() -> dict[str, float]:
        rates = nv.nvmlDeviceGetUtilizationRates(h)
        return {"util_gpu": float(rates.gpu), "util_mem": float(rates.memory)}

    def temperature() -> dict[str, float]:
        return {"temp_c": float(nv.nvmlDeviceGetTemperature(h, getattr(nv, "NVML_TEMPERATURE_GPU", 0)))}

    def sm_clock() -> dict[str, float]:
        return {"sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, getattr(nv, "NVML_CLOCK_SM", 1)))}

    reasons_call = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons

    def throttle() -> dict[str, float]:
        return {"throttle": float(reasons_call(h))}

    candidates: list[tuple[str, list[Callable[[], dict[str, float]]]]] = [
        ("power", [instant_power, average_power]),
        ("energy", [energy]),
        ("memory", [memory]),
        ("process_memory", [process_memory]),
        ("utilization", [utilization]),
        ("temperature", [temperature]),
        ("sm_clock", [sm_clock]),
        ("throttle", [throttle]),
    ]
    missing: dict[str, str] = {}
    for name, reads in candidates:
        errors = []
        for read in reads:
            try:
                values = read()
            except Exception as exc:
                errors.append(f"{read.__name__}: {describe_error(exc)}")
                continue
            if read is instant_power and not values["power_w"] > 0:
                errors.append(f"instant_power: read {values['power_w']} W")
                continue
            dev.fields[name] = DeviceField(name, read, tuple(values))
            if name == "power":
                dev.info["power_source"] = power_source(dev, read is instant_power, errors)
                dev.info["power_averaging_s"] = power_averaging_s(dev, read is instant_power)
            break
        else:
            missing[f"{dev.prefix}{name}"] = "; ".join(errors)
    return missing


def _reads_instantly(dev: Device) -> bool | None:
    """Whether ``nvmlDeviceGetPowerUsage`` reads instantly on this GPU (GA100 and older),
    None when its architecture is unknown."""
    arch, name = dev.info.get("architecture"), str(dev.info.get("name") or "")
    if arch is None or arch >= 0xFFFFFFFF:
        return None
    return arch < ARCH_AMPERE or any(tag in name for tag in ("A100", "A30"))


def power_source(dev: Device, instant: bool, errors: list[str]) -> str:
    """Which power reading is used and what it averages over, in words."""
    if instant:
        return "instant (NVML_FI_DEV_POWER_INSTANT)"
    reads_instantly = _reads_instantly(dev)
    if reads_instantly is None:
        window = "a 1 s average on Ampere (except GA100) and newer, instantaneous on older GPUs"
    elif not reads_instantly:
        window = "a 1 s average on this GPU"
    else:
        window = "instantaneous on this GPU (GA100 and older)"
    why = f"; instant field unavailable: {errors[0]}" if errors else ""
    return f"nvmlDeviceGetPowerUsage, {window}{why}"


def power_averaging_s(dev: Device, instant: bool) -> float:
    """Seconds the power reading averages over: 0 for an instant one, 1 s for
    ``nvmlDeviceGetPowerUsage`` unless the GPU is known to read it instantly (GA100 and
    older); an unknown architecture is taken as averaged, since it may be."""
    if instant or _reads_instantly(dev):
        return 0.0
    return AVERAGED_POWER_S


__all__ = ["THROTTLE_REASONS", "by_uuid", "decode_throttle", "describe", "describe_error", "probe",
           "resolve"]
