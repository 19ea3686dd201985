"""The machine's load and the memory-fit decision."""

from __future__ import annotations

import pytest

from bench import machine


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


def test_memory_fit_has_a_margin():
    gib = 1 << 30
    fits, words = machine.fits_at_once(gib, 4, 16 * gib)
    assert fits and "4 copies" in words
    assert not machine.fits_at_once(gib, 4, 6 * gib)[0]  # 4 x 1.5 + 1 GiB headroom > 6
    assert not machine.fits_at_once(gib, 2, None)[0]


def test_model_bytes_counts_shared_tensors_once():
    import torch

    a = torch.nn.Linear(10, 10)
    b = torch.nn.Sequential(a, torch.nn.Linear(10, 10))
    assert machine.model_bytes([a, b]) == 2 * (100 + 10) * 4
