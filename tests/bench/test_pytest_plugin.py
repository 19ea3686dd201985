"""The pytest plugin: registered by entry point, cheap to import, and a fixture whose JSON
pytest-benchmark's own ``compare`` and ``accelbench gate`` both read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from bench import gate

pytest_plugins = ["pytester"]

BENCH_TESTS = """
import math

def test_baseline(generation_benchmark):
    r = generation_benchmark("digits-unet", "baseline", steps=2, batch_size=1, rounds=3,
                             warmup_rounds=1, quality_images=4, distribution_metrics=False)
    assert r.quality["psnr"] == math.inf

def test_fewer_steps(generation_benchmark):
    r = generation_benchmark("digits-unet", "steps:n=1", steps=2, batch_size=1, rounds=3,
                             warmup_rounds=1, quality_images=4, distribution_metrics=False)
    assert r.quality["psnr"] < math.inf and r.images.shape[0] == 4
    assert len(r.latencies_s) == 3  # benchmarks are enabled in this session

def test_cannot_run(generation_benchmark):
    generation_benchmark("digits-unet", "bf16", device="mps", rounds=1, quality_images=0)
"""


def test_registered_through_the_pytest11_entry_point():
    eps = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert eps.get("accelbench") == "bench.pytest_plugin"


def test_plugin_import_is_cheap():
    code = "import sys, bench.pytest_plugin; print(sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def preloaded(digits_unet):
    """Import what the fixture uses before an in-process inner session: pytester restores
    ``sys.modules`` afterwards, and extension modules (numpy's) cannot load twice."""
    import bench.measure.engine  # noqa: F401
    import bench.measure.samplers  # noqa: F401
    import bench.quality.adherence  # noqa: F401
    import bench.quality.fidelity  # noqa: F401
    import bench.quality.suite  # noqa: F401

    return digits_unet


def test_fixture_json_for_pytest_benchmark_compare_and_the_gate(pytester, preloaded):
    """One inner session with benchmarks enabled (in this process: the model's libraries
    are imported once): pytest-benchmark timing, extra_info, a skip with its reason, the
    JSON read by ``pytest-benchmark compare`` and by the gate."""
    pytester.makepyfile(test_inner=BENCH_TESTS)
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--benchmark-enable",
                                       "--benchmark-json=out.json", "-rs")
    res.assert_outcomes(passed=2, skipped=1)
    res.stdout.fnmatch_lines(["*MPS is not available*"])
    out = pytester.path / "out.json"
    data = json.loads(out.read_text())
    by_name = {b["name"]: b for b in data["benchmarks"]}
    assert set(by_name) == {"test_baseline", "test_fewer_steps"}
    fewer = by_name["test_fewer_steps"]
    assert len(fewer["stats"]["data"]) == 3 and fewer["stats"]["rounds"] == 3
    assert fewer["stats"]["iterations"] == 1
    info = fewer["extra_info"]
    assert info["schema"] == "accelbench.pytest/1"
    assert (info["model"], info["strategy"]) == ("digits-unet", "steps:n=1")
    assert info["settings"]["steps"] == 1 and info["settings"]["batch_size"] == 1
    assert info["memory"]["peak_mb"] > 0
    energy = info["energy"]
    if energy["method"] == "unavailable":  # no readable RAPL here: a reason, never a zero
        assert energy["energy_j"] is None and "RAPL" in energy["reason"]
    else:
        assert energy["method"] == "rapl-package-counter" and energy["energy_j"] > 0
        assert energy["images"] == 3
    assert set(info["quality"]) == {"psnr", "ssim", "adherence"}
    assert info["quality_meta"]["psnr"]["higher_is_better"] is True
    assert by_name["test_baseline"]["extra_info"]["quality"]["psnr"] == "inf"

    # pytest-benchmark's own compare command reads it.
    exe = Path(sys.executable).with_name("pytest-benchmark")
    proc = subprocess.run([str(exe), "compare", str(out), "--columns=min,median,rounds"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "test_fewer_steps" in proc.stdout

    # So does the gate: raw samples, a speedup over the file's baseline, quality.
    entries = {e.strategy: e for e in gate.read_entries(out)}
    step = entries["steps:n=1"]
    assert step.key == "digits-unet | steps:n=1 | b=1" and len(step.latencies_s) == 3
    expected = float(np.median(entries["baseline"].latencies_s) / np.median(step.latencies_s))
    assert step.speedup["ratio"] == pytest.approx(expected)  # over the file's own baseline
    assert entries["baseline"].quality["psnr"] == math.inf
    verdict = gate.gate(list(entries.values()), list(entries.values()),
                        gate.Rules(quality=(gate.QualityRule.parse("psnr:-1"),)))
    assert verdict.exit_code == 0


def test_disabled_benchmarks_still_run_once_and_score(pytester, preloaded):
    pytester.makepyfile(test_one="""
def test_smoke(generation_benchmark):
    r = generation_benchmark("digits-unet", "steps:n=1", steps=2, batch_size=1, rounds=50,
                             quality_images=2, distribution_metrics=False)
    assert r.latencies_s == [] and "psnr" in r.quality
    assert r.extra_info["memory"]["reason"] == "nothing was timed"
""")
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--benchmark-disable")
    res.assert_outcomes(passed=1)
