"""The runner's use of the sampler on the CPU, end to end: the timed window and image count
reach the sampler, the raw series lands beside the results, energy says why it is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import results
from bench.harness import TimingConfig
from bench.runner import RunConfig, Runner
from bench.samplers import series
from strategies import parse_stack


class _Generator:
    """Just enough of a model for the runner's timed loop: real work, real step callbacks."""

    def __init__(self) -> None:
        self.net = torch.nn.Linear(256, 256)

    def generate(self, prompts, seeds, step_callback=None):
        x = torch.randn(len(prompts), 256)
        for i in range(5):
            x = torch.tanh(self.net(x))
            if step_callback:
                step_callback(i)
        return x


def test_timed_loop_window_and_images_reach_the_sampler(tmp_path):
    config = RunConfig(
        batch_size=4,
        timing=TimingConfig(warmup=2, min_iterations=5, min_seconds=0.2),
        sample_interval_s=0.005,
        out_dir=tmp_path,
    )
    runner = Runner(config, show_progress=False)
    stack = parse_stack("baseline")
    timing, result, cuda_peak = runner._time(_Generator(), stack, ["a"] * 4, [0, 1, 2, 3])
    assert cuda_peak is None
    assert result.summary["window"] == list(timing.window)
    n = len(timing.latencies_s)
    assert result.summary["images"] == 4 * n
    assert result.summary["window_s"] == pytest.approx(timing.window[1] - timing.window[0])
    assert set(result.series["iteration"]) <= {-1.0, *map(float, range(n))}
    energy = Runner._energy(result)
    assert energy["method"] in ("unavailable", "rapl-package-counter")
    assert energy["energy_j"] is None or energy["energy_j"] > 0
    assert Runner._memory(result, None)["peak_mb"] == result.summary["peak_rss_mb"] > 0
    rel = runner._save_series(stack, result)
    columns, meta = series.read(tmp_path / rel)
    assert len(columns["t"]) == result.summary["samples"] and meta["strategy"] == "baseline"


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
    (record,) = Runner(config, show_progress=False).run()
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
    assert memory["peak_mb"] == memory["peak_rss_mb"] > 0
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
