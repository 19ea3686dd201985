"""The report in a real browser: headless Chromium (Debian's ``chromium`` package, installed
in CI by ``.ci/run``: ``apt-get install -y --no-install-recommends chromium``).

What the browser built is read back with ``--dump-dom`` after the load event: the number of
figures, whether every embedded image decoded (the report's script records
``data-images="decoded/total"``) and whether the page overflows sideways at a phone-like
width (``data-layout="pageWidth/viewportWidth"``). A screenshot checks that the page and its
plots actually paint (not blank, the plots' colours present).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reports import build_report
from reports.plots import FRONT_COLOR
from tests.support.reports_synthetic import make_run

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install -y --no-install-recommends chromium)",
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    run = base / "run"
    make_run(run, 6, prompts=[f"digit <{i}>" for i in range(20)])
    return build_report([run], run / "report.html"), base


def test_dom_after_load_has_every_figure_and_image_decoded(report):
    rep, base = report
    dom = _chromium(rep.path, base / "profile-dom", "--window-size=1280,900", "--dump-dom").stdout
    figures = re.findall(r'<figure class="plot" data-kind="([a-z-]+)"', dom)
    assert len(figures) == rep.figures == 8
    assert figures.count("pareto-latency") == 5
    grids = re.findall(r'<img class="grid-img"', dom)
    assert len(grids) == rep.grids == 6
    decoded = re.search(r'<html[^>]*data-images="(\d+)/(\d+)"', dom)
    assert decoded, "the report's load handler did not run"
    ok, total = map(int, decoded.groups())
    assert total == rep.figures + rep.grids and ok == total


def test_no_sideways_overflow_at_a_narrow_width(report):
    rep, base = report
    dom = _chromium(rep.path, base / "profile-narrow", "--window-size=500,900", "--dump-dom").stdout
    layout = re.search(r'<html[^>]*data-layout="(\d+)/(\d+)"', dom)
    assert layout
    page_width, viewport = map(int, layout.groups())
    assert page_width <= viewport, f"page is {page_width}px wide in a {viewport}px viewport"


def test_screenshot_renders_plots_and_grids(report):
    from PIL import Image

    rep, base = report
    shot = base / "shot.png"
    _chromium(rep.path, base / "profile-shot", "--window-size=1600,4200", f"--screenshot={shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (4200, 1600)
    gray = img.mean(axis=2)
    assert (gray < 235).mean() > 0.05, "screenshot is (nearly) blank"
    assert gray.std() > 20
    # The frontier colour of the Pareto plots is painted...
    target = np.array([int(FRONT_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    blue = (np.abs(img - target).sum(axis=2) < 20).sum()
    assert blue > 300, f"only {blue} frontier-coloured pixels: plots did not render"
    # ...and so are the image grids (greyscale digits: many distinct grey levels)
    greys = img[(np.ptp(img, axis=2) == 0)][:, 0]
    assert len(np.unique(greys)) > 100
