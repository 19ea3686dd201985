"""Samplers on the CPU: the series arithmetic, real psutil sampling, RAPL (on a fake
powercap tree), thread and process modes, and the raw series file."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.measure.samplers import CPUSampler, Sampler, make_sampler, series
from bench.measure.samplers import energy as energy_mod
from bench.measure.samplers.rapl import RAPLReader
from bench.measure.samplers.timeseries import (
    Counter,
    counter_delta,
    in_window,
    integrate,
    interpolate,
    iteration_index,
    span_length,
    windows_of,
)

clock = time.perf_counter


# -- series arithmetic ----------------------------------------------------------------------
def test_counter_accumulates_and_scales():
    c = Counter(scale=1e-3)
    assert [c.update(v) for v in (1000, 1500, 4000)] == [0.0, 0.5, 3.0]
    assert c.wraps == c.resets == 0


def test_counter_wraps_at_modulus():
    c = Counter(modulus=100)
    totals = [c.update(v) for v in (90, 98, 3, 10)]
    assert totals == [0, 8, 13, 20]
    assert c.wraps == 1


def test_counter_reads_an_implausible_wrap_as_a_restart():
    c = Counter(modulus=2**64, max_step=1000)
    totals = [c.update(v) for v in (5_000_000, 5_000_400, 300, 700)]
    assert totals == [0, 400, 700, 1100]  # restarted from zero: 300 counted, then +400
    assert (c.wraps, c.resets) == (0, 1)


def test_interpolate_and_integrate_match_numpy():
    ts = [0.0, 0.1, 0.25, 0.4, 0.7, 1.0]
    ys = [10.0, 30.0, 20.0, 50.0, 40.0, 0.0]
    assert interpolate(ts, ys, 0.05) == pytest.approx(20.0)
    assert interpolate(ts, ys, 0.25) == 20.0
    assert interpolate(ts, ys, 1.5) is None
    window = (0.05, 0.85)
    # Only the samples inside the window (0.1 to 0.7), the nearest held out to its edges:
    # np.interp holds its end values beyond the points it is given.
    dense = np.linspace(*window, 200_001)
    reference = np.trapezoid(np.interp(dense, ts[1:5], ys[1:5]), dense)
    assert integrate(ts, ys, window) == pytest.approx(reference, rel=1e-6)


def test_counter_delta_interpolates_edges_and_skips_nan():
    ts = [0.0, 1.0, 2.0, 3.0]
    totals = [0.0, 100.0, math.nan, 300.0]
    assert counter_delta(ts, totals, (0.5, 2.5)) == pytest.approx(200.0)
    assert counter_delta(ts, totals, (0.5, 3.5)) is None  # samples stop before the end


def test_spans_of_several_windows_sum_and_pool():
    """One stack's calls interleaved with others': values, integrals and deltas over its
    windows only."""
    ts = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    ys = [1.0, 2.0, 9.0, 9.0, 3.0, 4.0]
    span = [(3.5, 4.5), (0.5, 1.5)]
    assert windows_of(span) == [(0.5, 1.5), (3.5, 4.5)] and windows_of((1, 2)) == [(1.0, 2.0)]
    assert span_length(span) == pytest.approx(2.0)
    assert in_window(ts, ys, span) == [2.0, 3.0]
    by_window = integrate(ts, ys, (0.5, 1.5)) + integrate(ts, ys, (3.5, 4.5))
    assert integrate(ts, ys, span) == pytest.approx(by_window)
    totals = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert counter_delta(ts, totals, span) == pytest.approx(20.0)


def test_energy_over_a_span_uses_the_counter_only_if_every_window_is_long_enough():
    ts = [i * 0.5 for i in range(13)]
    counter = [50.0 * t for t in ts]  # 50 W
    power = [40.0] * len(ts)
    long = energy_mod.estimate(ts, [(0.0, 1.5), (3.0, 4.5)], counter=counter, counter_name="c", power=power)
    assert long.method == "c" and long.energy_j == pytest.approx(150.0)
    mixed = energy_mod.estimate(ts, [(0.0, 1.5), (3.0, 3.5)], counter=counter, counter_name="c", power=power)
    assert mixed.method == "integrated-power" and mixed.energy_j == pytest.approx(80.0)
    assert "shortest of its windows 0.500 s" in mixed.reason
    figs = energy_mod.figures(150.0, [(0.0, 1.5), (3.0, 4.5)], 6)
    assert figs["window_s"] == pytest.approx(3.0) and figs["avg_power_w"] == pytest.approx(50.0)


def test_iteration_index():
    bounds = [(1.0, 2.0), (2.5, 3.0)]
    assert iteration_index([0.5, 1.0, 1.9, 2.2, 2.7, 3.5], bounds) == [-1, 0, 0, -1, 1, -1]


def test_energy_prefers_the_counter_on_long_windows():
    ts = [0.0, 0.5, 1.0, 1.5, 2.0]
    counter = [0.0, 50.0, 100.0, 150.0, 200.0]  # 100 W
    power = [90.0] * 5  # deliberately different, to see which was used
    est = energy_mod.estimate(ts, (0.25, 1.75), counter=counter, counter_name="c", power=power)
    assert est.method == "c" and est.energy_j == pytest.approx(150.0)
    short = energy_mod.estimate(ts, (0.5, 1.0), counter=counter, counter_name="c", power=power)
    assert short.method == "integrated-power" and short.energy_j == pytest.approx(45.0)
    assert "shorter than 1 s" in short.reason


def test_energy_unavailable_says_why_and_is_never_zero():
    est = energy_mod.estimate([0.0, 1.0], (0.0, 1.0), counter=None, counter_missing="no RAPL")
    assert est.energy_j is None and est.method == "unavailable" and "no RAPL" in est.reason
    figs = energy_mod.figures(None, (0.0, 2.0), 10)
    assert figs["j_per_image"] is None and figs["images_per_kwh"] is None


def test_energy_figures():
    figs = energy_mod.figures(360.0, (10.0, 12.0), 36)
    assert figs["avg_power_w"] == pytest.approx(180.0)
    assert figs["j_per_image"] == pytest.approx(10.0)
    assert figs["images_per_kwh"] == pytest.approx(360_000.0)  # 3.6e6 J / 10 J


# -- the sampler machinery ---------------------------------------------------------------
def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="interval_s"):
        CPUSampler(interval_s=0)
    with pytest.raises(ValueError, match="mode"):
        CPUSampler(mode="fiber")
    s = CPUSampler(interval_s=0.01)
    with s:
        pass
    with pytest.raises(ValueError, match="images"):
        s.result(images=-1)
    with pytest.raises(ValueError, match="window"):
        s.result(window=(2.0, 1.0))


class _Flaky(Sampler):
    source = "flaky"

    def __init__(self) -> None:
        super().__init__(0.01)
        self.n = 0

    def _sample(self):
        self.n += 1
        if self.n == 3:
            raise RuntimeError("sensor hiccup")
        return {"x": float(self.n)}


def test_a_failing_sample_does_not_stop_sampling():
    s = _Flaky()
    with s:
        time.sleep(0.15)
    r = s.result()
    assert "sensor hiccup" in r.missing["sampler"]
    assert r.summary["samples"] > 5
    assert math.isnan(r.series["x"][2])


class _Broken(_Flaky):
    def _start(self):
        raise OSError("device busy")


def test_a_failing_start_is_recorded_and_sampling_goes_on():
    s = _Broken()
    with s:
        time.sleep(0.05)
    r = s.result()
    assert "device busy" in r.missing["sampler_start"]
    assert r.summary["samples"] >= 2


def _busy(seconds: float) -> None:
    end = clock() + seconds
    while clock() < end:
        sum(i * i for i in range(1000))


def test_cpu_sampler_real_readings():
    s = make_sampler("cpu", 0.02)
    assert isinstance(s, CPUSampler)
    with s:
        time.sleep(0.05)
        t0, c0 = clock(), time.process_time()
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        _busy(0.4)
        t1, c1 = clock(), time.process_time()
        del block
        time.sleep(0.05)
    r = s.result(window=(t0, t1), images=8, bounds=[(t0, t1)])
    ts = r.series["t"]
    assert ts == sorted(ts) and ts[0] < t0 and ts[-1] > t1
    # Fixed rate, no catch-up bursts; on an overloaded machine the SCHED_BATCH poller may
    # wake late and take fewer samples, never more.
    expected = (ts[-1] - ts[0]) / 0.02 + 1
    assert 5 <= r.summary["samples"] <= expected * 1.1 + 2
    assert r.summary["mode"] == "thread"
    rss = r.series["rss_mb"]
    assert r.summary["peak_rss_mb"] >= min(rss) + 150
    # against the kernel's CPU time for this process over the window (the machine may be shared)
    assert r.summary["cpu_percent_mean"] == pytest.approx(100 * (c1 - c0) / (t1 - t0), abs=15)
    assert set(r.series["iteration"]) == {-1.0, 0.0}
    if sys.platform == "linux":
        assert r.summary["rss_hwm_mb"] >= r.summary["peak_rss_mb"] - 1


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policy")
def test_poller_runs_under_sched_batch_and_the_loop_does_not():
    seen = {}

    class Probe(_Flaky):
        def _sample(self):
            if threading.current_thread() is not threading.main_thread():  # the poller's
                seen["policy"] = os.sched_getscheduler(0)
            return {}

    s = Probe()
    with s:
        time.sleep(0.05)
    assert seen["policy"] == os.SCHED_BATCH and os.sched_getscheduler(0) != os.SCHED_BATCH
    assert s.result().summary["sampler_sched"] == "SCHED_BATCH"
    off = Probe()
    off.batch_sched = False
    with off:
        time.sleep(0.05)
    assert off.result().summary["sampler_sched"] == "default"


def test_psutil_fallback_reads_the_same_figures(monkeypatch):
    def no_proc(pid):
        raise OSError("no /proc here")

    monkeypatch.setattr("bench.measure.samplers.cpu._ProcFiles", no_proc)
    s = CPUSampler(interval_s=0.02)
    with s:
        t0, c0 = clock(), time.process_time()
        _busy(0.3)
        t1, c1 = clock(), time.process_time()
    r = s.result(window=(t0, t1))
    assert {"rss_mb", "cpu_percent", "sys_cpu_percent"} <= set(r.series)
    import psutil

    assert r.summary["peak_rss_mb"] == pytest.approx(psutil.Process().memory_info().rss / 2**20, rel=0.2)
    assert r.summary["cpu_percent_mean"] == pytest.approx(100 * (c1 - c0) / (t1 - t0), abs=15)


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM is Linux's")
def test_rss_high_water_mark_catches_a_peak_between_samples():
    import psutil

    s = CPUSampler(interval_s=5.0)  # samples at enter and exit (more only on a slow machine)
    with s:
        before = psutil.Process().memory_info().rss / 2**20
        spike = np.ones(300 * 2**20 // 8)
        del spike
    r = s.result()
    assert r.summary["rss_hwm_mb"] >= before + 280  # the kernel's mark saw the spike
    assert r.summary["rss_hwm_mb"] >= r.summary["peak_rss_mb"]


def test_cpu_energy_without_rapl_is_unavailable_with_a_reason(tmp_path):
    s = CPUSampler(interval_s=0.02, rapl_root=tmp_path / "nowhere")
    with s:
        time.sleep(0.06)
    r = s.result(images=4)
    assert r.summary["energy_j"] is None and r.summary["method"] == "unavailable"
    assert "no RAPL powercap interface" in r.missing["energy"]


# -- RAPL on a fake powercap tree -------------------------------------------------------
def _powercap(root: Path, packages: int = 1, max_uj: int = 262_143_328_850) -> list[Path]:
    files = []
    for i in range(packages):
        zone = root / f"intel-rapl:{i}"
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"package-{i}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (zone / "energy_uj").write_text("0\n")
        sub = root / f"intel-rapl:{i}:0"  # the core subzone: inside the package's figure
        sub.mkdir()
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("0\n")
        files.append(zone / "energy_uj")
    return files


def test_rapl_reader_sums_packages_and_unwraps(tmp_path):
    a, b = _powercap(tmp_path, packages=2, max_uj=1_000_000)
    a.write_text("900000\n")
    b.write_text("10\n")
    reader = RAPLReader(tmp_path)
    assert reader.open() is None and [z.name for z in reader.zones] == ["package-0", "package-1"]
    a.write_text("200000\n")  # wrapped: +300000 uJ
    b.write_text("500010\n")  # +500000 uJ
    assert reader.read() == pytest.approx(0.8)
    assert reader.wraps == 1


def test_rapl_permission_denied_is_explained(tmp_path, monkeypatch):
    _powercap(tmp_path)

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("bench.measure.samplers.rapl.Zone.read_raw", deny)
    reason = RAPLReader(tmp_path).open()
    assert "root only" in reason and "chmod" in reason


def _feed(path: Path, watts: float, stop: threading.Event) -> None:
    """Advance a fake ``energy_uj`` at ``watts``; replaced atomically, as sysfs never tears."""
    start = clock()
    tmp = path.with_name("energy_uj.tmp")
    while not stop.wait(0.002):
        tmp.write_text(f"{int((clock() - start) * watts * 1e6) % 262_143_328_850}\n")
        os.replace(tmp, path)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_cpu_sampler_energy_from_rapl(tmp_path, mode):
    (energy_file,) = _powercap(tmp_path)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(energy_file, 50.0, stop), daemon=True)
    feeder.start()
    try:
        s = CPUSampler(interval_s=0.02, rapl_root=tmp_path, mode=mode)
        with s:
            time.sleep(0.05)
            t0 = clock()
            time.sleep(0.5)
            t1 = clock()
            time.sleep(0.05)
    finally:
        stop.set()
        feeder.join()
    r = s.result(window=(t0, t1), images=10)
    assert r.summary["mode"] == mode, r.missing
    assert r.summary["method"] == "rapl-package-counter", r.missing
    assert r.summary["avg_power_w"] == pytest.approx(50.0, rel=0.15)  # the feeder may lag
    assert r.summary["j_per_image"] == pytest.approx(r.summary["energy_j"] / 10)
    assert r.summary["images_per_kwh"] == pytest.approx(10 * 3.6e6 / r.summary["energy_j"])
    assert "every process" in r.summary["energy_scope"]
    assert "energy" not in r.missing


def test_process_mode_timestamps_share_the_harness_clock():
    s = CPUSampler(interval_s=0.02, mode="process")
    before = clock()
    with s:
        t0, c0 = clock(), time.process_time()
        _busy(0.3)
        t1, c1 = clock(), time.process_time()
    after = clock()
    r = s.result(window=(t0, t1))
    assert r.summary["mode"] == "process", r.missing
    ts = r.series["t"]
    assert before <= ts[0] <= t0 and t1 <= ts[-1] <= after
    assert "clock" not in r.missing
    assert r.summary["samples_in_window"] >= 3
    # the child watches this process, not itself
    assert r.summary["cpu_percent_mean"] == pytest.approx(100 * (c1 - c0) / (t1 - t0), abs=15)


# -- the raw series file ------------------------------------------------------------------
def _result():
    s = CPUSampler(interval_s=0.01)
    with s:
        t0 = clock()
        time.sleep(0.08)
        t1 = clock()
    return s.result(window=(t0, t1), images=2, bounds=[(t0, t1)])


def test_series_parquet_round_trip(tmp_path):
    r = _result()
    path = series.write(r, tmp_path / "series" / "steps_n-0.5", extra={"strategy": "steps:n=0.5"})
    assert path.name == "steps_n-0.5.parquet"
    columns, meta = series.read(path)
    assert set(columns) == set(r.series)
    np.testing.assert_array_equal(columns["t"], r.series["t"])  # float64 kept exact
    np.testing.assert_allclose(columns["rss_mb"], r.series["rss_mb"], rtol=1e-6)
    assert columns["iteration"].dtype == np.int32
    assert meta["units"]["rss_mb"] == "MiB" and meta["clock"] == "time.perf_counter"
    assert meta["strategy"] == "steps:n=0.5" and meta["window"] == r.summary["window"]
    import pandas as pd

    assert len(pd.read_parquet(path)) == r.summary["samples"]


def test_series_npz_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    r = _result()
    path = series.write(r, tmp_path / "baseline")
    assert path.suffix == ".npz"
    columns, meta = series.read(path)
    np.testing.assert_array_equal(columns["t"], r.series["t"])
    assert meta["source"] == "cpu"
