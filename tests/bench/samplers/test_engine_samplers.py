"""The engine's use of the sampler on the CPU, end to end: each stack's windows and image
count reach the sampler, the raw series lands beside the results, energy says why it is
missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core import results
from bench.core.config import RunConfig, TimingConfig
from bench.measure.arms import LocalArm
from bench.measure.engine import Engine
from bench.measure.measures import energy_fields, memory_fields
from bench.measure.samplers import make_sampler, series
from bench.measure.schedules import Interleaved


class _Model:
    """Just enough of a model for an arm: real work, real step callbacks."""

    def __init__(self, width: int) -> None:
        self.net = torch.nn.Linear(width, width)
        self.width = width
        self.device = torch.device("cpu")

    def generate(self, prompts, seeds, step_callback=None):
        x = torch.randn(len(prompts), self.width)
        for i in range(5):
            x = torch.tanh(self.net(x))
            if step_callback:
                step_callback(i)
        return x


def test_each_arms_windows_and_images_reach_the_sampler():
    arms = [LocalArm(name, _Model(w), ["a"] * 4, [0, 1, 2, 3]) for name, w in (("A", 256), ("B", 64))]
    sampler = make_sampler("cpu", 0.005)
    with sampler:
        timings = Interleaved().run(arms, TimingConfig(warmup=1, min_iterations=4, min_seconds=0.1))
    for timing in timings:
        n = len(timing.latencies_s)
        result = sampler.result(window=timing.bounds, images=4 * n, bounds=timing.bounds)
        assert result.summary["windows"] == n and result.summary["images"] == 4 * n
        assert result.summary["window"] == [timing.bounds[0][0], timing.bounds[-1][1]]
        assert result.summary["window_s"] == pytest.approx(sum(b - a for a, b in timing.bounds))
        assert set(result.series["iteration"]) <= {-1.0, *map(float, range(n))}
        energy = energy_fields(result)
        assert energy["windows"] == n
        if energy["method"] == "unavailable":  # no readable RAPL here: a reason, never a zero
            assert energy["energy_j"] is None and "RAPL" in energy["reason"]
        else:
            assert energy["method"] == "rapl-package-counter" and energy["energy_j"] > 0
            assert energy["images"] == 4 * n
        memory = memory_fields(result, None, local=True, attributed=True)
        peak = result.summary["peak_rss_mb"]
        assert memory["process_peak_rss_mb"] == peak
        if result.summary["samples_in_window"]:
            assert peak > 0
        else:  # calls shorter than the polling interval: no figure, never the run's samples
            assert peak is None and "no sample inside" in result.missing["window_samples"]
        assert memory["rss_hwm_mb"] is None and memory["peak_mb"] is None  # no call made alone
        own = series.restrict(result, timing.bounds)
        inside = [t for t in own.series["t"] if any(a <= t <= b for a, b in timing.bounds)]
        assert own.series["t"] == inside and len(inside) < len(result.series["t"])


@pytest.mark.slow
def test_run_records_series_energy_and_memory(tmp_path):
    config = RunConfig(
        strategies=("baseline",),
        batch_size=2,
        steps=2,
        timing=TimingConfig(warmup=1, min_iterations=3, min_seconds=0),
        quality_images=0,
        sample_interval_s=0.01,
        out_dir=tmp_path,
    )
    (record,) = Engine(config, show_progress=False).run().records
    assert record["status"] == "ok", record.get("traceback")
    window = record["timing"]["bounds"][0][0], record["timing"]["bounds"][-1][1]
    assert record["sampler"]["summary"]["window"] == list(window)

    path = tmp_path / record["series_file"]
    assert path.exists() and record["series_file"].startswith("series/")
    columns, meta = series.read(path)
    iterations = set(columns["iteration"].tolist())
    assert {-1, 0, 1, 2} <= iterations  # warm-up samples outside, each timed call inside
    t, it = columns["t"], columns["iteration"]
    for i, (a, b) in enumerate(record["timing"]["bounds"]):
        assert np.all((t[it == i] >= a) & (t[it == i] <= b))

    energy = record["energy"]
    if energy["energy_j"] is None:  # no readable RAPL here: a reason, never a zero
        assert energy["method"] == "unavailable" and energy["reason"]
    else:
        assert energy["method"] == "rapl-package-counter"
        assert energy["images"] == 3 * 2
        assert energy["j_per_image"] > 0 and energy["images_per_kwh"] > 0
    memory = record["memory"]
    assert memory["peak_mb"] == pytest.approx(memory["weights_mb"] + memory["activations_mb"])
    assert 0 < memory["peak_mb"] < memory["process_peak_rss_mb"]
    assert results.load(tmp_path).loc[0, "peak_mem_mb"] == memory["peak_mb"]


@pytest.mark.slow
def test_gpu_check_script_runs_against_the_fake():
    """tests/gpu/check_nvml.py itself, end to end on the CPU with the fake NVML."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "gpu" / "check_nvml.py"
    out = subprocess.run(
        [sys.executable, str(script), "--fake", "--overhead-rounds", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[PASS] energy counter vs integrated power" in out.stdout
    assert "[FAIL]" not in out.stdout
