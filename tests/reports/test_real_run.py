"""A report from a real tiny run of the embedded digits-unet model (skipped without its
weights): ``accelbench run`` writes ``report.html`` by default and prints its path, and the
report holds what the run measured."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reports import build_report

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "bench" / "models" / "weights" / "digits-unet" / "model_index.json"
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WEIGHTS.exists(), reason="digits-unet weights not present (train them with "
                                                     "python -m bench.models.digits.training.train_digits_unet)"),
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "run"
    cmd = [sys.executable, "-m", "bench.cli", "run", "-n", "1", "--warmup", "0", "--min-seconds", "0",
           "-q", "10", "-s", "baseline", "-s", "steps:n=5", "-o", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_run_writes_the_report_by_default(real_run):
    out, stdout = real_run
    assert (out / "report.html").is_file()
    assert f"report:  {out / 'report.html'}" in stdout


def test_report_of_a_real_run(real_run, tmp_path):
    out, _ = real_run
    rep = build_report([out], tmp_path / "again.html")
    page = rep.path.read_text()
    kinds = re.findall(r'<figure class="plot" data-kind="([a-z-]+)"', page)
    # psnr, ssim, adherence (classifier), fid and kid (its std folded in) against latency
    assert kinds.count("pareto-latency") >= 3
    assert {"speed", "steps", "timeline"} <= set(kinds)
    assert rep.grids == 2 and rep.entries == 2
    assert re.search(r'href="[^"]*results\.jsonl"', page)
    assert "steps:n=5" in page and "git_commit" in page
    if CHROMIUM:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900", "--dump-dom",
             rep.path.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        ).stdout
        decoded = re.search(r'data-images="(\d+)/(\d+)"', dom)
        assert decoded and decoded.group(1) == decoded.group(2) == str(rep.figures + rep.grids)
