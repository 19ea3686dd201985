"""Comparing runs: per strategy change, Mann-Whitney U significance, quality directions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from bench.core import results
from reports import build_report
from reports.compare import QualityChange, compare_runs
from reports.data import load_runs
from tests.support.reports_synthetic import make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cmp")
    make_run(base / "ref", 4, seed=0, with_series=False)
    make_run(base / "same", 4, seed=0, with_series=False)  # identical samples
    make_run(base / "slower", 4, seed=1, slowdown=1.3, with_series=False)
    make_run(base / "faster", 4, seed=2, slowdown=0.7, with_series=False)
    return base


def _by_strategy(changes):
    return {c.strategy: c for c in changes}


def test_verdicts_are_four_words(runs):
    loaded = load_runs([runs / "ref", runs / "same", runs / "slower", runs / "faster"])
    same, slower, faster = (_by_strategy(c) for c in compare_runs(loaded))
    for name in ("baseline", "bf16", "steps:n=10"):
        assert same[name].verdict == "equivalent"  # identical samples: within +-5%
        assert same[name].ratio == pytest.approx(1.0) and same[name].p_value == 1.0
        assert slower[name].verdict == "slower" and slower[name].ratio < 1
        assert slower[name].percent == pytest.approx(30, abs=8)
        assert faster[name].verdict == "faster" and faster[name].ratio > 1
        assert slower[name].ci_low <= slower[name].ratio <= slower[name].ci_high


def test_p_value_matches_scipy_on_per_image_latencies(runs):
    loaded = load_runs([runs / "ref", runs / "slower"])
    (changes,) = compare_runs(loaded)
    c = _by_strategy(changes)["bf16"]
    ref = next(e for e in loaded[0].entries if e.strategy == "bf16")
    new = next(e for e in loaded[1].entries if e.strategy == "bf16")
    a = np.asarray(ref.record["timing"]["latencies_s"]) * 1000 / 8
    b = np.asarray(new.record["timing"]["latencies_s"]) * 1000 / 8
    assert c.p_value == pytest.approx(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert c.before_ms == pytest.approx(np.median(a)) and c.after_ms == pytest.approx(np.median(b))
    assert c.n_before == c.n_after == 8


def test_quality_changes_use_declared_directions(runs):
    loaded = load_runs([runs / "ref", runs / "slower"])
    c = _by_strategy(compare_runs(loaded)[0])["bf16"]
    q = {x.metric: x for x in c.quality}
    assert set(q) >= {"psnr", "ssim", "fid", "kid"}
    assert not q["fid"].higher_is_better and q["psnr"].higher_is_better
    # the rule itself, independent of the synthetic numbers
    assert QualityChange("fid", "FID", 10.0, 8.0, False).better is True
    assert QualityChange("psnr", "PSNR", 30.0, 28.0, True).better is False
    assert QualityChange("psnr", "PSNR", float("inf"), float("inf"), True).better is None
    assert QualityChange("x", "x", None, 1.0, True).better is None


def test_new_missing_and_not_comparable(tmp_path, runs):
    other = tmp_path / "other"
    recs = [r for r in results.iter_records(runs / "ref") if r["strategy"] != "bf16"]
    for r in recs:
        if r["strategy"] == "steps:n=10":
            r = {**r, "strategy": "steps:n=8"}
        results.append(other, r)
    changes = _by_strategy(compare_runs(load_runs([runs / "ref", other]))[0])
    assert changes["bf16"].verdict == "missing"
    assert changes["steps:n=10"].verdict == "missing"
    assert changes["steps:n=8"].verdict == "new"
    assert changes["int8-dynamic"].verdict == "not comparable"
    assert "status unsupported" in changes["int8-dynamic"].notes[0]


def test_comparison_section_in_the_report(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_run(a, 3, seed=0, with_series=False, with_quality=False, extra=[])
    make_run(b, 3, seed=1, slowdown=1.3, with_series=False, with_quality=False, extra=[])
    rep = build_report([a, b], tmp_path / "cmp.html")
    page = rep.path.read_text()
    assert '<section id="compare">' in page
    section = page[page.index('<section id="compare">'):]
    assert section.count(">slower<") == 3
    assert len(re.findall(r'data-kind="compare"', page)) == 1
    # both runs in the table, each strategy once per run, labelled by run
    assert ">run 1<" in page and ">run 2<" in page
    assert page.count('id="img-r0e') == 3 and page.count('id="img-r1e') == 3


def test_a_lost_metric_is_worse_and_other_settings_get_no_verdict(tmp_path, runs):
    """A metric the reference had and the later run lost (NaN, or not measured) reads as
    worse, never unknown; a stack measured at other settings gets no latency verdict."""
    assert QualityChange("psnr", "PSNR", 30.0, float("nan"), True).better is False
    assert QualityChange("fid", "FID", 3.0, None, False).better is False
    assert QualityChange("fid", "FID", float("nan"), float("nan"), False).better is None
    other = tmp_path / "other"
    for r in results.iter_records(runs / "ref"):
        if r["strategy"] == "bf16":
            r = {**r, "quality": {**r["quality"], "psnr": "nan"}}
        if r["strategy"] == "steps:n=10":
            r = {**r, "settings": {**r.get("settings", {}), "quality_images": 99}}
        results.append(other, r)
    changes = _by_strategy(compare_runs(load_runs([runs / "ref", other]))[0])
    psnr = next(q for q in changes["bf16"].quality if q.metric == "psnr")
    assert psnr.lost and psnr.better is False
    moved = changes["steps:n=10"]
    assert moved.verdict == "not comparable" and any("quality_images 20" in n for n in moved.notes)
    page = build_report([runs / "ref", other], tmp_path / "r.html").path.read_text()
    assert "lost (" in page
