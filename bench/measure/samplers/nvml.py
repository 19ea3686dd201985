"""GPU sampling through NVML (nvidia-ml-py), on top of the CPU sampler's readings.

Every GPU the model uses is sampled. Per GPU and per sample: power, the total-energy
counter, device memory used, this process's device memory, GPU and memory utilisation,
temperature, SM clock and the clock-event (throttle) reasons; columns are named
``gpu<k>.<field>`` where ``k`` is the CUDA ordinal (``cuda:k``).

Power is read from the instant field (``NVML_FI_DEV_POWER_INSTANT``) where the GPU offers it.
Otherwise ``nvmlDeviceGetPowerUsage`` is used, which NVML documents as a 1 s average on
Ampere (except GA100) and newer, and instantaneous on GA100 and older; the result records
which one was read, and how long it averages over (``power_averaging_s``). Energy over the
timed window comes from the total-energy counter (Volta and newer) when the window lasts at
least ``min_energy_window_s``, else from integrating the power samples that resolve the
window's calls; the summary says which, or why neither can.

Nothing here may break a run: NVML absent, no GPU, permission denied, unsupported fields and
a driver failing mid-run each leave a reason in ``missing`` and the run goes on.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.samplers import energy as _energy
from bench.samplers.base import clock
from bench.samplers.cpu import MB, CPUSampler
from bench.samplers.timeseries import (
    Counter,
    Span,
    count_summary,
    finite_pairs,
    in_window,
    mean,
    samples_per_window,
    window_values,
    windows_of,
)

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


def _ordinal(device: str) -> int:
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
class _Field:
    """One NVML reading of a device, producing one or more columns."""

    name: str
    read: Callable[[], dict[str, float]]
    columns: tuple[str, ...]
    errors: int = 0


@dataclass
class _Device:
    """A sampled GPU: its CUDA ordinal, NVML handle and live fields."""

    ordinal: int
    handle: Any
    info: dict[str, Any]
    fields: dict[str, _Field] = field(default_factory=dict)
    proc_seen: bool = False
    counter: Counter | None = None

    @property
    def prefix(self) -> str:
        return f"gpu{self.ordinal}."


class NVMLSampler(CPUSampler):
    """Samples every GPU the model uses through NVML, plus everything :class:`CPUSampler` reads.

    Args:
        device: the run's device (``cuda``, ``cuda:1``).
        interval_s: polling period in seconds (default 50 ms).
        mode: ``thread`` or ``process``.
        gpus: CUDA ordinals the model uses (default: ``device``'s alone).
        nvml: the NVML binding to use: None for ``pynvml`` (nvidia-ml-py), a module name,
            or an object with the same calls (the tests' fake).
        min_energy_window_s: shortest timed window over which the energy counter is used;
            shorter windows integrate the power samples.
        cpu_kwargs: ``pid`` (whose device memory is read; default this process),
            ``rapl_root`` and ``batch_sched``, as for :class:`CPUSampler`.
    """

    source = "nvml"
    _transient = (*CPUSampler._transient, "_nv", "_devices")

    def __init__(
        self,
        device: str = "cuda",
        interval_s: float = 0.05,
        mode: str = "thread",
        gpus: Sequence[int] | None = None,
        nvml: Any = None,
        min_energy_window_s: float = 1.0,
        **cpu_kwargs: Any,
    ) -> None:
        super().__init__(interval_s, mode=mode, **cpu_kwargs)
        if min_energy_window_s < 0:
            raise ValueError(f"min_energy_window_s must be >= 0, got {min_energy_window_s}")
        self.device = device
        ordinals = sorted({int(g) for g in gpus}) if gpus else [_ordinal(device)]
        if any(g < 0 for g in ordinals):
            raise ValueError(f"CUDA ordinals must be >= 0, got {ordinals}")
        self.gpus = ordinals
        self.nvml = nvml
        self.min_energy_window_s = min_energy_window_s
        self._uuids: dict[int, str] = {}
        self._nv: Any = None
        self._devices: list[_Device] = []
        self._t_started = 0.0

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if isinstance(self.nvml, types.ModuleType):  # modules do not pickle: send the name
            state["nvml"] = self.nvml.__name__
        return state

    # -- measured process --------------------------------------------------------------
    def _prepare(self) -> None:
        super()._prepare()
        self._uuids = _torch_uuids(self.gpus)

    # -- polling context ---------------------------------------------------------------
    def _start(self) -> None:
        super()._start()
        self._devices = []
        self._nv = None
        self._t_started = clock()
        self.info["gpus"] = {}
        nv = self._load_binding()
        if nv is None:
            return
        try:
            nv.nvmlInit()
        except Exception as exc:
            self.missing["nvml"] = f"nvmlInit failed: {describe_error(exc)}"
            return
        self._nv = nv
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as exc:
            self.missing["nvml"] = f"nvmlDeviceGetCount failed: {describe_error(exc)}"
            return
        if count == 0:
            self.missing["nvml"] = "NVML sees no GPU"
            return
        for ordinal in self.gpus:
            handle, how = self._resolve(ordinal, count)
            if handle is None:
                self.missing[f"gpu{ordinal}"] = how
                continue
            dev = _Device(ordinal, handle, {"mapping": how})
            self._describe(dev)
            self._probe(dev)
            self._devices.append(dev)
            self.info["gpus"][str(ordinal)] = dev.info

    def _load_binding(self) -> Any:
        if self.nvml is not None and not isinstance(self.nvml, str):
            return self.nvml
        name = self.nvml or "pynvml"
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            self.missing["nvml"] = f"{name} (nvidia-ml-py) is not importable: {exc}"
            return None

    def _resolve(self, ordinal: int, count: int) -> tuple[Any, str]:
        """The NVML handle of CUDA device ``ordinal`` and how it was found (or None, why)."""
        nv = self._nv
        uuid = self._uuids.get(ordinal)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if uuid:
            handle = self._by_uuid(uuid, count)
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
                handle = self._by_uuid(entry, count)
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

    def _by_uuid(self, uuid: str, count: int) -> Any:
        """The handle of the GPU whose UUID is ``uuid`` or starts with it (CUDA accepts
        abbreviated UUIDs, NVML does not); None if there is none."""
        nv = self._nv
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

    def _describe(self, dev: _Device) -> None:
        """Static facts: name, UUID, architecture, power limit, memory size."""
        nv, h = self._nv, dev.handle
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

    def _probe(self, dev: _Device) -> None:
        """Try every field once; keep those that answer, record why the others do not."""
        nv, h, pid = self._nv, dev.handle, self.pid
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
                columns = tuple(values)
                dev.fields[name] = _Field(name, read, columns)
                if name == "power":
                    dev.info["power_source"] = self._power_source(dev, read is instant_power, errors)
                    averaging = self._power_averaging_s(dev, read is instant_power)
                    dev.info["power_averaging_s"] = averaging
                break
            else:
                self.missing[f"{dev.prefix}{name}"] = "; ".join(errors)

    @staticmethod
    def _power_source(dev: _Device, instant: bool, errors: list[str]) -> str:
        if instant:
            return "instant (NVML_FI_DEV_POWER_INSTANT)"
        arch, name = dev.info.get("architecture"), str(dev.info.get("name") or "")
        ga100 = any(tag in name for tag in ("A100", "A30"))
        if arch is None or arch >= 0xFFFFFFFF:
            window = "a 1 s average on Ampere (except GA100) and newer, instantaneous on older GPUs"
        elif arch >= ARCH_AMPERE and not ga100:
            window = "a 1 s average on this GPU"
        else:
            window = "instantaneous on this GPU (GA100 and older)"
        why = f"; instant field unavailable: {errors[0]}" if errors else ""
        return f"nvmlDeviceGetPowerUsage, {window}{why}"

    @staticmethod
    def _power_averaging_s(dev: _Device, instant: bool) -> float:
        """Seconds the power reading averages over: 0 for an instant one, 1 s for
        ``nvmlDeviceGetPowerUsage`` unless the GPU is known to read it instantly (GA100 and
        older); an unknown architecture is taken as averaged, since it may be."""
        if instant:
            return 0.0
        arch, name = dev.info.get("architecture"), str(dev.info.get("name") or "")
        ga100 = any(tag in name for tag in ("A100", "A30"))
        if arch is not None and arch < 0xFFFFFFFF and (arch < ARCH_AMPERE or ga100):
            return 0.0
        return AVERAGED_POWER_S

    def _sample(self) -> dict[str, float]:
        row = super()._sample()
        for dev in self._devices:
            for fld in list(dev.fields.values()):
                try:
                    values = fld.read()
                    fld.errors = 0
                except Exception as exc:
                    values = dict.fromkeys(fld.columns, math.nan)
                    self._failed(dev, fld, exc)
                row.update({dev.prefix + k: v for k, v in values.items()})
        return row

    def _failed(self, dev: _Device, fld: _Field, exc: BaseException) -> None:
        """A field that worked at the start failed: give it (or the device) up when it must."""
        fld.errors += 1
        code = getattr(exc, "value", None)
        at = f"failed mid-run, {clock() - self._t_started:.2f} s into sampling: {describe_error(exc)}"
        if code in FATAL:
            for name in list(dev.fields):
                self.missing[f"{dev.prefix}{name}"] = at
            dev.fields.clear()
        elif fld.errors >= MAX_ERRORS:
            self.missing[f"{dev.prefix}{fld.name}"] = f"{at}; {MAX_ERRORS} times in a row"
            dev.fields.pop(fld.name, None)

    def _close(self) -> None:
        super()._close()
        for dev in self._devices:
            if dev.counter is not None and "energy" in dev.fields:
                dev.info["energy_counter_wraps"] = dev.counter.wraps
                dev.info["energy_counter_resets"] = dev.counter.resets
            if "process_memory" in dev.fields and not dev.proc_seen:
                self.missing[f"{dev.prefix}process_memory"] = (
                    f"NVML listed no compute process with pid {self.pid} (in a container NVML "
                    "may report host PIDs)"
                )
        self._devices = []
        if self._nv is not None:
            try:
                self._nv.nvmlShutdown()
            except Exception as exc:
                self.missing.setdefault("nvml_shutdown", describe_error(exc))
            self._nv = None

    # -- summaries ---------------------------------------------------------------------
    def _gpu_summary(
        self, ordinal: int, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        p = f"gpu{ordinal}."
        info = dict(self.info.get("gpus", {}).get(str(ordinal), {}))
        ts = series.get("t", [])
        out: dict[str, Any] = dict(info)

        def vals(name: str) -> list[float]:
            return window_values(series, p + name, window)

        lag = float(info.get("power_averaging_s") or 0.0)
        column = series.get(p + "power_w")
        power = in_window(ts, column, window, lag) if column else []
        out["peak_power_w"] = max(power) if power else None
        out["mean_power_w"] = mean(power)
        if window is not None and p + "power_w" in series:
            finite_ts = finite_pairs(ts, series[p + "power_w"])[0]
            counts = samples_per_window(finite_ts, window, lag)
            out["power_samples_per_window"] = count_summary(counts)
            if not power:
                shortest = min(b - a for a, b in windows_of(window))
                after = (
                    f" taken {lag:g} s or more after the window opens (the reading is an "
                    f"average over {lag:g} s)"
                    if lag
                    else ""
                )
                out["power_reason"] = (
                    f"no power reading inside any window{after}; shortest window "
                    f"{shortest:.3f} s: peak and mean power unavailable, never the run's"
                )
        for name, key, fn in (
            ("mem_used_mb", "mem_used_peak_mb", max),
            ("proc_mem_mb", "proc_mem_peak_mb", max),
            ("util_gpu", "util_gpu_mean", mean),
            ("util_mem", "util_mem_mean", mean),
            ("temp_c", "temp_max_c", max),
            ("sm_clock_mhz", "sm_clock_mean_mhz", mean),
            ("sm_clock_mhz", "sm_clock_min_mhz", min),
        ):
            values = vals(name)
            out[key] = fn(values) if values else None
        masks = vals("throttle")
        union = 0
        for m in masks:
            union |= int(m)
        out["throttle_reasons"] = decode_throttle(union) if masks else None
        if window is not None:
            if not info:  # the GPU was never opened
                why = self.missing.get(f"gpu{ordinal}") or self.missing.get("nvml", "not sampled")
                est = _energy.EnergyEstimate(None, "unavailable", f"no NVML readings: {why}")
            else:
                no_counter = self.missing.get(p + "energy")
                est = _energy.estimate(
                    ts,
                    window,
                    counter=series.get(p + "energy_j"),
                    counter_name="nvml-energy-counter",
                    counter_missing=f"no NVML energy counter: {no_counter}" if no_counter else None,
                    power=series.get(p + "power_w"),
                    power_note=str(info.get("power_source", "")),
                    power_averaging_s=lag,
                    min_window_s=self.min_energy_window_s,
                )
            out["energy"] = {
                **_energy.figures(est.energy_j, window, images),
                "method": est.method,
                "reason": est.reason,
                "samples_per_window": est.samples_per_window,
            }
        return out

    def _summarize(
        self, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        out = self._cpu_summary(series, window, images)
        self.missing.pop("energy", None)
        gpus = {str(k): self._gpu_summary(k, series, window, images) for k in self.gpus}
        out["gpus"] = gpus
        out["device_mem_peak_mb"] = self._summed_peak(series, "mem_used_mb", window)
        out["process_mem_peak_mb"] = self._summed_peak(series, "proc_mem_mb", window)
        if window is None:
            self.missing["energy"] = "no window: energy needs the timed loop's start and end"
            return out
        energies = [g["energy"] for g in gpus.values()]
        if all(e["energy_j"] is not None for e in energies):
            total = sum(e["energy_j"] for e in energies)
            methods = sorted({e["method"] for e in energies})
            out.update({k: v for k, v in _energy.figures(total, window, images).items()})
            out["method"] = methods[0] if len(methods) == 1 else "mixed: " + ", ".join(methods)
            notes = sorted({e["reason"] for e in energies if e["reason"]})
            if notes:
                out["energy_note"] = "; ".join(notes)
        else:
            out.update(_energy.figures(None, window, images))
            out["method"] = "unavailable"
            self.missing["energy"] = "; ".join(
                f"cuda:{k}: {g['energy']['reason']}" for k, g in gpus.items() if g["energy"]["energy_j"] is None
            )
        out["energy_scope"] = "GPU board power via NVML, GPUs " + ", ".join(f"cuda:{k}" for k in gpus)
        return out

    def _summed_peak(self, series: dict[str, list[float]], name: str, window: Span | None) -> float | None:
        """Peak over samples of the column ``name`` summed across GPUs (None if any GPU lacks it)."""
        columns = [series.get(f"gpu{k}.{name}") for k in self.gpus]
        if not columns or any(c is None for c in columns):
            return None
        summed = [sum(vals) for vals in zip(*columns, strict=True)]
        values = in_window(series["t"], summed, window)
        return max(values) if values else None


def _torch_uuids(ordinals: Sequence[int]) -> dict[int, str]:
    """CUDA ordinal -> NVML-style UUID (``GPU-...``) from torch, when torch is already loaded
    and CUDA initialised; empty otherwise (never imports torch nor initialises CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return {}
        found = {}
        for k in ordinals:
            uuid = str(torch.cuda.get_device_properties(k).uuid)
            if uuid:
                found[k] = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        return found
    except Exception:
        return {}


__all__ = ["NVMLSampler", "THROTTLE_REASONS", "decode_throttle", "describe_error"]
