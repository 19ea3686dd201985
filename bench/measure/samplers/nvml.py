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

import importlib
import math
import sys
import types
from collections.abc import Sequence
from typing import Any

from bench.core.config import SAMPLE_INTERVAL_S
from bench.measure.samplers import energy as _energy
from bench.measure.samplers.base import clock
from bench.measure.samplers.cpu import CPUSampler
from bench.measure.samplers.nvml_device import (
    FATAL,
    MAX_ERRORS,
    THROTTLE_REASONS,
    Device,
    DeviceField,
    cuda_ordinal,
    decode_throttle,
    describe,
    describe_error,
    probe,
    resolve,
)
from bench.measure.samplers.timeseries import (
    Span,
    count_summary,
    finite_pairs,
    in_window,
    mean,
    samples_per_window,
    window_values,
    windows_of,
)


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
        interval_s: float = SAMPLE_INTERVAL_S,
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
        ordinals = sorted({int(g) for g in gpus}) if gpus else [cuda_ordinal(device)]
        if any(g < 0 for g in ordinals):
            raise ValueError(f"CUDA ordinals must be >= 0, got {ordinals}")
        self.gpus = ordinals
        self.nvml = nvml
        self.min_energy_window_s = min_energy_window_s
        self._uuids: dict[int, str] = {}
        self._nv: Any = None
        self._devices: list[Device] = []
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
            handle, how = resolve(nv, ordinal, count, self._uuids.get(ordinal))
            if handle is None:
                self.missing[f"gpu{ordinal}"] = how
                continue
            dev = Device(ordinal, handle, {"mapping": how})
            describe(nv, dev)
            self.missing.update(probe(nv, dev, self.pid))
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

    def _failed(self, dev: Device, fld: DeviceField, exc: BaseException) -> None:
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
            out["energy"] = est.summary(window, images)
        return out

    def _device_summary(
        self, series: dict[str, list[float]], window: Span | None, images: int | None
    ) -> dict[str, Any]:
        """Each GPU's figures, and device memory peaks summed across the GPUs."""
        return {
            "gpus": {str(k): self._gpu_summary(k, series, window, images) for k in self.gpus},
            "device_mem_peak_mb": self._summed_peak(series, "mem_used_mb", window),
            "process_mem_peak_mb": self._summed_peak(series, "proc_mem_mb", window),
        }

    def _energy_summary(self, out: dict[str, Any], window: Span, images: int | None) -> dict[str, Any]:
        """The GPUs' energy summed (the CPU's is left out: NVML measures the boards)."""
        gpus = out["gpus"]
        energies = [g["energy"] for g in gpus.values()]
        if all(e["energy_j"] is not None for e in energies):
            total = sum(e["energy_j"] for e in energies)
            methods = sorted({e["method"] for e in energies})
            top = _energy.figures(total, window, images)
            top["method"] = methods[0] if len(methods) == 1 else "mixed: " + ", ".join(methods)
            notes = sorted({e["reason"] for e in energies if e["reason"]})
            if notes:
                top["energy_note"] = "; ".join(notes)
        else:
            top = _energy.figures(None, window, images)
            top["method"] = "unavailable"
            self.missing["energy"] = "; ".join(
                f"cuda:{k}: {g['energy']['reason']}" for k, g in gpus.items() if g["energy"]["energy_j"] is None
            )
        top["energy_scope"] = "GPU board power via NVML, GPUs " + ", ".join(f"cuda:{k}" for k in gpus)
        return top

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
