"""Cluster problems end in one line, quickly, with what to do (no Ray instance is started)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.sweep import SweepError
from bench.sweep.executors.ray_executor import check_reachable, cluster_address

REPO = Path(__file__).resolve().parents[2]


def _sweep_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('models = ["digits-unet"]\nstrategies = ["steps:n=2"]\n[settings]\nsteps = 2\n')
    return path


def test_an_address_nobody_answers_at_fails_in_one_line_within_10_s(tmp_path):
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "sweep", str(_sweep_file(tmp_path)), "--address", "127.0.0.1:1"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert time.perf_counter() - started < 10
    assert proc.returncode == 2
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "'127.0.0.1:1'" in lines[0] and "ray start --head" in lines[0] and "drop --address" in lines[0]


def test_auto_without_a_cluster_says_how_to_start_one(monkeypatch):
    import ray._private.services as services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir=None: None)
    with pytest.raises(SweepError, match=r"no running Ray cluster found.*ray start --head"):
        cluster_address("auto")


def test_addresses_are_parsed_and_checked():
    assert cluster_address("ray://head:10001") == ("head", 10001)
    assert cluster_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    with pytest.raises(SweepError, match="expected auto, host:port"):
        cluster_address("nonsense")
    with pytest.raises(SweepError, match="Connection refused"):
        check_reachable("127.0.0.1:1", timeout=2)
