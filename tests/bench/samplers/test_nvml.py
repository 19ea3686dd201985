"""The NVML sampler's GPU code path, against a fake of the nvidia-ml-py calls it makes:
energy from the counter (with wrap-around) or integrated power, unsupported fields,
permission denied, NVML absent, no GPU, the driver failing mid-run, CUDA ordinal mapping,
process mode, and the runner's energy and memory fields built from the result."""

from __future__ import annotations

import math
import os
import time

import pytest

from bench.measure.samplers import make_sampler, series
from bench.measure.samplers.nvml import NVMLSampler, decode_throttle
from tests.support.fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeGPU, FakeNVML

clock = time.perf_counter
PID = os.getpid()


def _run(sampler: NVMLSampler, seconds: float, images: int = 8, lead: float = 0.05):
    """Sample a window of ``seconds`` with a little margin on both sides."""
    with sampler:
        time.sleep(lead)
        t0 = clock()
        time.sleep(seconds)
        t1 = clock()
        time.sleep(lead)
    return sampler.result(window=(t0, t1), images=images, bounds=[(t0, t1)])


def _two_gpus() -> FakeNVML:
    return FakeNVML(
        [
            FakeGPU(uuid="GPU-aaaa", power_w=250.0, mem_used=20 * 2**30, proc_mem={PID: 6 * 2**30}),
            FakeGPU(uuid="GPU-bbbb", power_w=100.0, mem_used=4 * 2**30, proc_mem={PID: 2 * 2**30, 1: 2**30}),
        ]
    )


def test_every_gpu_sampled_and_energy_from_the_counter():
    fake = _two_gpus()
    r = _run(NVMLSampler("cuda:0", interval_s=0.02, gpus=[0, 1], nvml=fake), 1.1, images=22)
    s = r.summary
    assert r.source == "nvml"
    assert s["method"] == "nvml-energy-counter"
    window = s["window_s"]
    assert s["energy_j"] == pytest.approx(350.0 * window, rel=0.02)
    assert s["avg_power_w"] == pytest.approx(350.0, rel=0.02)
    assert s["j_per_image"] == pytest.approx(s["energy_j"] / 22)
    assert s["images_per_kwh"] == pytest.approx(22 * 3.6e6 / s["energy_j"])
    assert s["device_mem_peak_mb"] == pytest.approx(24 * 1024)
    assert s["process_mem_peak_mb"] == pytest.approx(8 * 1024)
    g0 = s["gpus"]["0"]
    assert g0["power_source"].startswith("instant")
    assert g0["energy"]["energy_j"] == pytest.approx(250.0 * window, rel=0.02)
    assert g0["peak_power_w"] == 250.0 and g0["util_gpu_mean"] == 97
    assert g0["temp_max_c"] == 55 and g0["sm_clock_min_mhz"] == 1980
    assert g0["throttle_reasons"] == ["sw_power_cap"]
    assert g0["name"] == "NVIDIA H100 80GB HBM3" and g0["power_limit_w"] == 700.0
    for col in ("power_w", "energy_j", "mem_used_mb", "proc_mem_mb", "util_gpu", "temp_c", "sm_clock_mhz", "throttle"):
        assert f"gpu1.{col}" in r.series
    assert "rss_mb" in r.series and s["peak_rss_mb"] > 0  # the CPU side is read too
    assert not any(k.startswith("gpu") for k in r.missing), r.missing
    assert fake.calls["nvmlShutdown"] == 1


def test_short_window_integrates_instant_power():
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([FakeGPU(power_w=200.0)])), 0.4)
    s = r.summary
    assert s["method"] == "integrated-power (instant (NVML_FI_DEV_POWER_INSTANT))"
    assert s["energy_j"] == pytest.approx(200.0 * s["window_s"], rel=1e-6)
    assert "shorter than 1 s" in s["energy_note"]


def test_energy_counter_wraps_around():
    gpu = FakeGPU(power_w=300.0, energy_start_mj=2**64 - 150_000)  # wraps after 0.5 s
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([gpu]), min_energy_window_s=0.5), 0.8, lead=0.1)
    s = r.summary
    assert s["method"] == "nvml-energy-counter"
    assert s["energy_j"] == pytest.approx(300.0 * s["window_s"], rel=0.02)
    assert s["gpus"]["0"]["energy_counter_wraps"] == 1


def test_instant_field_unsupported_falls_back_to_averaged_power():
    gpu = FakeGPU(unsupported={"instant_power"})
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([gpu])), 0.2)
    g = r.summary["gpus"]["0"]
    assert g["power_source"].startswith("nvmlDeviceGetPowerUsage, a 1 s average on this GPU")
    assert "Not Supported" in g["power_source"] and g["power_averaging_s"] == 1.0
    # A 1 s average cannot resolve a 0.2 s window: every reading in it reaches back before it.
    assert r.summary["method"] == "unavailable" and r.summary["energy_j"] is None
    assert "average over 1 s, longer than the window (0.2" in r.missing["energy"]
    assert g["mean_power_w"] is None and "1 s or more after the window opens" in g["power_reason"]
    a100 = FakeGPU(name="NVIDIA A100-SXM4-80GB", architecture=7, unsupported={"instant_power"})
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([a100])), 0.1)
    g = r.summary["gpus"]["0"]
    assert "instantaneous on this GPU (GA100 and older)" in g["power_source"]
    assert g["power_averaging_s"] == 0.0
    assert r.summary["method"].startswith("integrated-power (nvmlDeviceGetPowerUsage")


def test_no_energy_counter_before_volta():
    gpu = FakeGPU(name="Tesla P100", architecture=4, unsupported={"nvmlDeviceGetTotalEnergyConsumption"})
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([gpu]), min_energy_window_s=0.2), 0.3)
    s = r.summary
    assert s["method"].startswith("integrated-power")
    assert "Not Supported" in r.missing["gpu0.energy"]
    assert "no NVML energy counter" in s["energy_note"]
    assert "gpu0.energy_j" not in r.series


def test_unsupported_and_denied_fields_are_named():
    gpu = FakeGPU(
        unsupported={"nvmlDeviceGetTemperature", "nvmlDeviceGetCurrentClocksEventReasons"},
        denied={"nvmlDeviceGetComputeRunningProcesses"},
    )
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([gpu])), 0.1)
    assert "Not Supported" in r.missing["gpu0.temperature"]
    assert "Not Supported" in r.missing["gpu0.throttle"]
    assert "permission denied" in r.missing["gpu0.process_memory"]
    g = r.summary["gpus"]["0"]
    assert g["temp_max_c"] is None and g["throttle_reasons"] is None
    assert r.summary["process_mem_peak_mb"] is None
    assert r.summary["energy_j"] is not None  # the rest still works


def test_this_process_not_listed():
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML([FakeGPU(proc_mem={1: 2**30})])), 0.1)
    assert f"no compute process with pid {PID}" in r.missing["gpu0.process_memory"]
    assert r.summary["process_mem_peak_mb"] is None


def test_driver_failing_mid_run():
    fake = FakeNVML([FakeGPU(lost_after_s=0.3)])
    r = _run(NVMLSampler(interval_s=0.02, nvml=fake), 0.6)
    s = r.summary
    assert "failed mid-run" in r.missing["gpu0.power"] and "GPU is lost" in r.missing["gpu0.energy"]
    assert s["energy_j"] is None and s["method"] == "unavailable"
    assert "do not span the window" in r.missing["energy"]
    power = r.series["gpu0.power_w"]
    assert not math.isnan(power[0]) and math.isnan(power[-1])
    assert all(not math.isnan(v) for v in r.series["rss_mb"])  # CPU readings went on
    assert fake.calls[("nvmlDeviceGetPowerUsage", 0)] == 0  # the instant field was used


def test_a_flaky_field_is_given_up_after_repeated_errors():
    gpu = FakeGPU(fail_after={"nvmlDeviceGetTemperature": 1})  # the probe's call succeeds
    fake = FakeNVML([gpu])
    r = _run(NVMLSampler(interval_s=0.02, nvml=fake), 0.3)
    assert "3 times in a row" in r.missing["gpu0.temperature"]
    assert fake.calls["nvmlDeviceGetTemperature"] == 1 + 3  # stopped asking
    assert r.summary["energy_j"] is not None


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (FakeNVML(init_error=NVML_ERROR_LIBRARY_NOT_FOUND), "nvmlInit failed: NVML Shared Library Not Found"),
        (FakeNVML([]), "NVML sees no GPU"),
        ("no_such_nvml_module", "is not importable"),
    ],
)
def test_nvml_unavailable_the_run_goes_on(fake, reason):
    r = _run(NVMLSampler(interval_s=0.02, nvml=fake), 0.1)
    assert reason in r.missing["nvml"]
    assert r.summary["energy_j"] is None and r.summary["method"] == "unavailable"
    assert reason in r.missing["energy"]
    assert r.summary["device_mem_peak_mb"] is None
    assert r.summary["peak_rss_mb"] > 0


def test_cuda_ordinals_follow_cuda_visible_devices(monkeypatch):
    gpus = [FakeGPU(uuid=f"GPU-{i}{i}{i}-abcd", power_w=100.0 * (i + 1)) for i in range(4)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-333")  # an abbreviated UUID, as CUDA allows
    r = _run(NVMLSampler("cuda", interval_s=0.02, gpus=[0, 1], nvml=FakeNVML(gpus)), 0.1)
    g = r.summary["gpus"]
    assert g["0"]["uuid"] == "GPU-222-abcd" and "NVML index 2" in g["0"]["mapping"]
    assert g["1"]["uuid"] == "GPU-333-abcd" and "by UUID" in g["1"]["mapping"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    r = _run(NVMLSampler("cuda:1", interval_s=0.02, nvml=FakeNVML(gpus)), 0.1)
    assert "not in CUDA_VISIBLE_DEVICES" in r.missing["gpu1"]
    assert "no NVML readings" in r.missing["energy"]


def test_uuid_from_torch_wins(monkeypatch):
    gpus = [FakeGPU(uuid=f"GPU-{i}{i}{i}-abcd") for i in range(3)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # ignored: torch named the device
    monkeypatch.setattr("bench.measure.samplers.nvml._torch_uuids", lambda ordinals: {0: "GPU-111-abcd"})
    r = _run(NVMLSampler("cuda:0", interval_s=0.02, nvml=FakeNVML(gpus)), 0.05)
    g = r.summary["gpus"]["0"]
    assert g["uuid"] == "GPU-111-abcd" and g["mapping"].endswith("(from torch)")


def test_process_mode_with_the_fake():
    r = _run(NVMLSampler(interval_s=0.02, nvml=_two_gpus(), gpus=[0, 1], mode="process"), 1.05)
    assert r.summary["mode"] == "process", r.missing
    assert r.summary["method"] == "nvml-energy-counter"
    assert r.summary["avg_power_w"] == pytest.approx(350.0, rel=0.02)
    assert r.summary["gpus"]["1"]["uuid"] == "GPU-bbbb"


def test_make_sampler_picks_nvml_for_cuda():
    assert isinstance(make_sampler("cuda:1"), NVMLSampler)
    assert make_sampler("cuda:1").gpus == [1]
    assert make_sampler("cuda", gpus=[2, 0]).gpus == [0, 2]
    assert not isinstance(make_sampler("cpu"), NVMLSampler)


def test_decode_throttle():
    assert decode_throttle(0) == []
    assert decode_throttle(0x4 | 0x40 | 0x1000) == ["sw_power_cap", "hw_thermal_slowdown", "0x1000"]


def test_series_file_holds_gpu_columns(tmp_path):
    r = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML()), 0.1)
    columns, meta = series.read(series.write(r, tmp_path / "s"))
    assert meta["units"]["gpu0.power_w"] == "W" and meta["units"]["gpu0.energy_j"] == "J"
    assert columns["gpu0.energy_j"].dtype.name == "float64"
    assert columns["gpu0.power_w"].dtype.name == "float32"


def test_engine_energy_and_memory_fields():
    from bench.measure.measures import energy_fields, memory_fields

    r = _run(NVMLSampler(interval_s=0.02, gpus=[0, 1], nvml=_two_gpus()), 1.05, images=16)
    energy = energy_fields(r)
    assert energy["method"] == "nvml-energy-counter"
    assert energy["images_per_kwh"] == pytest.approx(16 * 3.6e6 / energy["energy_j"])
    assert set(energy["per_device"]) == {"cuda:0", "cuda:1"}
    assert energy["images"] == 16
    own = {"weights_mb": 3000.0, "added_mb": 0.0, "activations_mb": 1200.0, "peak_mb": 4200.0}
    memory = memory_fields(r, cuda_peak=5000.0, local=True, attributed=False, stack=own)
    assert memory["device_peak_mb"] == pytest.approx(24 * 1024)
    assert memory["process_device_peak_mb"] == pytest.approx(8 * 1024)
    assert memory["cuda_allocator_peak_mb"] == 5000.0  # the process's view, every stack resident
    assert memory["peak_mb"] == 4200.0 and memory["weights_mb"] == 3000.0  # the stack's own

    lost = _run(NVMLSampler(interval_s=0.02, nvml=FakeNVML(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)), 0.1)
    energy = energy_fields(lost)
    assert energy["method"] == "unavailable" and energy["j_per_image"] is None
    assert "NVML Shared Library Not Found" in energy["reason"]
