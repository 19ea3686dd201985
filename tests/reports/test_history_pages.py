"""The history pages in a real browser: headless Chromium (as in ``test_browser.py``).

A synthetic points frame (three series, one with a step) goes through
:func:`bench.history.changepoints.changes` and :func:`reports.history.write_pages`; the
overview and a series page are then opened in Chromium: the DOM after load (``--dump-dom``)
shows every series and the change points, a screenshot shows the plots and the red change
marker painted, every relative link resolves to a file, and Chromium's network log
(``--log-net-log``) shows the pages request nothing outside themselves, a page with an
outside image being the control that the log would show it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from bench.history.changepoints import changes
from reports.history import slug, write_pages
from reports.plots.style import FRONT_COLOR, SLOWER_COLOR
from tests.reports.test_browser import CHROMIUM, _chromium

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
COMMIT_URL = "https://github.com/o/r/commit/{commit}"


def _commit(i: int) -> str:
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()


def _series(rng, model: str, stack: str, metric: str, unit: str, higher: bool,
            values: np.ndarray) -> pd.DataFrame:
    n = len(values)
    machine, settings = "Synthetic CPU, 2 cores", "steps=10 batch=2"
    return pd.DataFrame({
        "series": " | ".join((model, stack, machine, settings, metric)), "model": model,
        "stack": stack, "machine": machine, "settings": settings, "metric": metric, "unit": unit,
        "higher_is_better": higher, "commit": [_commit(i) for i in range(n)],
        "commit_date": pd.date_range("2026-03-01", periods=n, freq="D"),
        "added_at": pd.date_range("2026-04-01", periods=n, freq="h"),
        "run": [f"run{i:03d}" for i in range(n)], "value": values,
        "low": values * (1 - 0.04 * rng.uniform(0.8, 1.2, n)),
        "high": values * (1 + 0.04 * rng.uniform(0.8, 1.2, n)),
    })


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    base = tmp_path_factory.mktemp("history")
    rng = np.random.default_rng(21)
    speed = 2.0 * (1 + 0.02 * rng.standard_normal(30))
    speed[18:] *= 0.7  # the step: a 30% speedup loss at the 19th commit
    latency = 80.0 * (1 + 0.02 * rng.standard_normal(30))
    psnr = 31.0 * (1 + 0.01 * rng.standard_normal(24))
    points = pd.concat([
        _series(rng, "digits-unet", "bf16+deepcache:interval=3", "speedup", "x", True, speed),
        _series(rng, "digits-unet", "bf16+deepcache:interval=3", "latency_ms", "ms", False, latency),
        _series(rng, "digits-dit", "<b>tome</b>", "psnr", "dB", True, psnr),
    ], ignore_index=True)
    found = changes(points)
    index = write_pages(points, found, base / "site", commit_url=COMMIT_URL)
    return base, index, points, found


def _net_requests(page: Path, profile: Path, log: Path) -> list[str]:
    """Every URL the page itself asked the network for (the browser's own traffic aside)."""
    _chromium(page, profile, f"--log-net-log={log}", "--dump-dom")
    data = json.loads(log.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in data["events"]
            if e["type"] == start and "file://" in e["params"].get("network_isolation_key", "")]


def test_overview_shows_every_series_with_its_change_points(pages):
    base, index, points, found = pages
    assert [(c.series.split(" | ")[-1], c.index, c.direction) for c in found] == [
        ("speedup", 18, "worse")]
    dom = _chromium(index, base / "p-index", "--window-size=1280,900", "--dump-dom").stdout
    cards = dict(re.findall(r'<figure class="trend[^"]*" data-series="([^"]+)" data-changes="(\d+)"', dom))
    assert set(cards) == {slug(s) for s in points.series.unique()}
    speed = slug(found[0].series)
    assert cards[speed] == "1" and sum(map(int, cards.values())) == 1
    assert re.search(r'class="change-mark worse" data-index="18"', dom)
    assert "&lt;b&gt;tome&lt;/b&gt;" in dom and "<b>tome</b>" not in dom  # escaped
    assert dom.count('<img src="data:image/png;base64,') == 3


def test_series_page_lists_the_change_with_commit_links(pages):
    base, index, points, found = pages
    change = found[0]
    page = index.parent / "series" / f"{slug(change.series)}.html"
    dom = _chromium(page, base / "p-series", "--window-size=1280,900", "--dump-dom").stdout
    row = re.search(r'<tr class="change worse" data-index="18">(.*?)</tr>', dom, re.S)
    assert row, "the change table has no row for the step"
    assert COMMIT_URL.format(commit=change.commit_before) in row.group(1)
    assert COMMIT_URL.format(commit=change.commit_after) in row.group(1)
    assert re.search(r"-(29|30|31)\.\d% \(x0\.\d+, 95% 0\.\d+ to 0\.\d+\)", row.group(1))
    assert len(re.findall(r"<tbody>.*?</tbody>", dom, re.S)[-1].split("<tr")) - 1 == 30
    assert 'data-kind="trend" data-changes="1"' in dom


def test_without_commit_url_hashes_are_text(tmp_path, pages):
    _, _, points, found = pages
    index = write_pages(points, found, tmp_path / "plain")
    html = index.read_text()
    assert "github.com" not in html and f">{_commit(18)[:7]}<" in html


def test_every_relative_link_resolves(pages):
    _, index, points, _ = pages
    files = [index, *sorted((index.parent / "series").glob("*.html"))]
    assert len(files) == 1 + points.series.nunique()
    for f in files:
        hrefs = re.findall(r'href="([^"]+)"', f.read_text())
        local = [h for h in hrefs if not h.startswith(("https://", "#"))]
        assert local, f
        for h in local:
            target = (f.parent / unquote(h.split("#")[0])).resolve()
            assert target.is_file(), f"{f.name}: {h} does not resolve"


def test_no_external_resource_is_requested(pages, tmp_path):
    base, index, _, found = pages
    series_page = index.parent / "series" / f"{slug(found[0].series)}.html"
    for f in (index, series_page):
        html = f.read_text()
        assert not re.search(r"<(script|link|iframe)\b[^>]*\b(src|href)=", html)
        assert all(s.startswith("data:") for s in re.findall(r'\bsrc="([^"]+)"', html))
        assert not re.search(r"url\((?!data:)", html) and "@import" not in html
        assert _net_requests(f, tmp_path / f"p-{f.stem}", tmp_path / f"{f.stem}.json") == []
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="https://example.invalid/x.png"></body></html>')
    seen = _net_requests(control, tmp_path / "p-control", tmp_path / "control.json")
    assert seen == ["https://example.invalid/x.png"]


def test_screenshot_paints_the_trend_and_the_change_marker(pages):
    from PIL import Image

    base, index, _, found = pages
    page = index.parent / "series" / f"{slug(found[0].series)}.html"
    shot = base / "series.png"
    _chromium(page, base / "p-shot", "--window-size=1200,1000", f"--screenshot={shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def count(color: str) -> int:
        target = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(img - target).sum(axis=2) < 30).sum())

    assert count(FRONT_COLOR) > 200, "the points did not paint"
    assert count(SLOWER_COLOR) > 100, "the worse change point's marker did not paint"



def test_an_empty_history_writes_an_empty_overview(tmp_path, pages):
    _, _, points, _ = pages
    index = write_pages(points.iloc[:0], [], tmp_path / "empty", title="nothing yet")
    html = index.read_text()
    assert "No points in the history yet" in html and "<title>nothing yet</title>" in html
