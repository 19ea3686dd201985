"""The GPU acceptance script's dry run: what it would run, on any machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_lists_every_step_within_eight_minutes():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run([str(ROOT / "tests" / "gpu" / "acceptance.sh"), "--dry-run"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    minutes = float(out.split("at most ")[1].split(" min")[0])
    assert minutes <= 8
    for step in ("nvml", "timing", "sdxl", "flux", "report"):
        assert f"  {step} " in out
    assert "--model arch:sdxl" in out and "--resolution 1024" in out and "-s deepcache" in out
    assert "--model arch:flux" in out and "-s fbcache" in out and "-s bf16+compile" in out
