"""The machine's load and the memory-fit decision."""

from __future__ import annotations

import pytest

from bench.measure import machine


def test_other_cores_from_the_cpu_samplers_series():
    # 2 cores: the machine 100% busy (2 cores), this process 100% of one core -> 1 other core.
    series = {"t": [0.0, 1.0, 2.0, 3.0], "sys_cpu_percent": [0, 100, 100, 50],
              "cpu_percent": [0, 100, 100, 100]}
    assert machine.other_cores(series, 2) == pytest.approx((1 + 1 + 0) / 3)
    assert machine.other_cores(series, 2, windows=[(0.5, 2.5)]) == pytest.approx(1.0)
    assert machine.other_cores({"t": [0.0]}, 2) is None


def test_oversubscription_is_said_with_the_remedy():
    report = machine.LoadReport(cores=2, machine_cores=2, torch_threads=2, loadavg_start=0.5)
    machine.finish(report, busy_elsewhere=1.6)
    assert report.oversubscribed and "--threads 1" in report.warning and "1.6 of 2" in report.warning
    calm = machine.finish(machine.LoadReport(2, 2, 1, loadavg_start=0.1), busy_elsewhere=0.3)
    assert not calm.oversubscribed and calm.warning is None
    single = machine.finish(machine.LoadReport(2, 2, 1), busy_elsewhere=1.9)
    assert single.oversubscribed and "--threads" not in single.warning  # already one thread


def test_memory_fit_counts_what_the_stacks_add_with_a_margin():
    gib = 1 << 30
    # Four stacks share a 12 GiB model (already loaded) and add 6 GiB of their own (a cast).
    fits, words = machine.fits_at_once(12 * gib, 6 * gib, 4, 9 * gib)
    assert fits and "4 stacks share the loaded 12.00 GiB model" in words and "6.00 GiB" in words
    assert not machine.fits_at_once(12 * gib, 6 * gib, 4, 7 * gib)[0]  # 6 x 1.15 + 1 > 7
    assert machine.fits_at_once(12 * gib, 0, 8, 2 * gib)[0]  # stacks that add nothing
    assert not machine.fits_at_once(gib, 0, 2, None)[0]
