"""The HTML report: content, escaping, self-containment, directions from the records, the
CLI, and that ``reports`` never imports torch. Fixtures are real records written with
``bench.core.results.append`` (synthetic numbers, see ``tests/support/reports_synthetic.py``)."""

from __future__ import annotations

import base64
import html as html_lib
import re
from pathlib import Path

import numpy as np
import pytest

from bench.core import results
from reports import build_report
from reports.data import load_runs, metric_order
from reports.plots import pareto_plot
from tests.support.reports_synthetic import make_record, make_run

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [f"a handwritten <b>{i}</b> & \"quoted\" 'digit'" for i in range(20)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One run (6 strategies + unsupported + failed) and its report, built once."""
    run = tmp_path_factory.mktemp("single") / "run"
    make_run(run, 6, prompts=PROMPTS)
    rep = build_report([run], run / "report.html")
    return run, rep, rep.path.read_text(encoding="utf-8")


def _figures(page: str) -> list[str]:
    return re.findall(r'<figure class="plot" data-kind="([a-z-]+)"', page)


def test_report_has_every_section_and_figure(single):
    run, rep, page = single
    metrics = ["psnr", "ssim", "adherence", "fid", "kid"]  # kid_std folds into kid
    kinds = _figures(page)
    assert kinds.count("pareto-latency") == len(metrics)
    assert kinds.count("pareto-energy") == 0  # no energy measured in this run...
    assert "No energy was measured: no power sensor readable" in page  # ...and it says why
    assert kinds.count("speed") == 1 and kinds.count("steps") == 1 and kinds.count("timeline") == 1
    assert rep.figures == len(kinds) == 8
    assert rep.grids == 6 and page.count('class="grid-img"') == 6
    for section in ('id="table"', 'id="not-measured"', 'id="environment"', 'id="how-to-read"'):
        assert section in page
    assert "<summary>How to read this</summary>" in page and "<b>inconclusive</b> (neither" in page
    # every strategy in the table, failures with their reason
    for name in ("baseline", "bf16", "steps:n=10", "compile", "int8-dynamic", "prune:ratio=0.5"):
        assert f">{name}<" in page or f">{name}</a>" in page
    assert "GroupNorm groups &lt;3&gt; do not divide channels" in page
    # break-even and training cold costs only where recorded; joint frontier marked
    assert "break-even images" in page and "training s" in page
    assert "\u2605" in page


def test_report_is_self_contained(single):
    _, _, page = single
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:  # every embedded image is a real PNG
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page
    assert page.count("<script>") == 1 and "<script src" not in page
    assert '<meta name="viewport"' in page and "@media (max-width: 640px)" in page


def test_table_is_sortable_with_numeric_keys(single):
    _, _, page = single
    table = page[page.index('<section id="table">'):page.index("</section>", page.index('<section id="table">'))]
    assert 'class="sortable"' in table
    header = re.findall(r"<th [^>]*>([^<]+)</th>", table)
    for col in ("strategy", "ms / call", "speedup", "images / s", "peak mem MiB", "PSNR (dB) \u2191",
                "FID \u2193", "KID \u2193", "first call s"):
        assert col in header, col
    assert len(re.findall(r'data-v="[-0-9.e+]+"', table)) > 30
    assert "sortTable" in page


def test_links_to_results_files_are_relative(single):
    run, _, page = single
    assert 'href="results.jsonl"' in page
    assert 'href="series/baseline.parquet"' in page
    assert (run / "series" / "baseline.parquet").is_file()


def test_pareto_listing_and_directions(single):
    run, _, _ = single
    entries = load_runs([run])[0].entries
    metrics = {m.name: m for m in metric_order(entries)}
    assert metrics["psnr"].higher_is_better and not metrics["fid"].higher_is_better
    fid = pareto_plot(entries, metrics["fid"], "latency", "digits-unet")
    psnr = pareto_plot(entries, metrics["psnr"], "latency", "digits-unet")
    # the baseline has the best PSNR (inf) and the best FID (lowest): on both frontiers
    assert any(row["label"] == "baseline" for row in fid.listing)
    assert any(row["label"] == "baseline" and row["y"] == "\u221e" for row in psnr.listing)
    # frontier points listed fastest first
    xs = [float(row["x"].split()[0].replace(",", "")) for row in fid.listing]
    assert xs == sorted(xs)


def _custom_metric_run(tmp_path, higher_is_better: bool) -> Path:
    """Two strategies: 'slow' with score 1, 'fast' with score 2, the direction declared."""
    run = tmp_path / f"run-{higher_is_better}"
    rng = np.random.default_rng(0)
    base_images = rng.random((20, 16, 16))
    clock = [0.0]
    base = None
    for name, speed, score in (("baseline", 1.0, 1.0), ("fast", 2.0, 2.0)):
        rec = make_record(name, speed, 0.1, run_dir=run, rng=rng, base_images=base_images,
                          baseline_latencies=base, clock=clock, with_series=False)
        base = base or rec["timing"]["latencies_s"]
        rec["quality"] = {"sharpness": score}
        rec["quality_meta"] = {"sharpness": {"name": "sharpness", "higher_is_better": higher_is_better,
                                             "unit": "au", "description": "a colleague's new metric"}}
        results.append(run, rec)
    return run


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_direction_comes_from_quality_meta(tmp_path, higher_is_better):
    run = _custom_metric_run(tmp_path, higher_is_better)
    entries = load_runs([run])[0].entries
    (metric,) = metric_order(entries)
    plot = pareto_plot(entries, metric, "latency", "m")
    on_front = [row["label"] for row in plot.listing]
    # higher is better: 'fast' is faster and scores higher, so it dominates the baseline
    assert on_front == (["fast"] if higher_is_better else ["fast", "baseline"])
    page = build_report([run], tmp_path / "r.html").path.read_text()
    assert ("sharpness (au) \u2191" if higher_is_better else "sharpness (au) \u2193") in page


def test_values_without_a_direction_are_tabled_not_plotted(tmp_path):
    run = _custom_metric_run(tmp_path, True)
    recs = list(results.iter_records(run))
    for rec in recs:
        rec.pop("quality_meta")
    results.results_path(run).unlink()
    for rec in recs:
        results.append(run, rec)
    rep = build_report([run], tmp_path / "r.html")
    page = rep.path.read_text()
    assert "pareto-latency" not in page and "no quality metric was measured" in page
    assert "no direction declared for this value" in page and ">sharpness<" in page


def test_user_text_is_escaped(tmp_path):
    evil = "<script>alert('x')</script>"
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    clock = [0.0]
    imgs = rng.random((20, 16, 16))
    base = make_record("baseline", 1.0, 0.0, run_dir=run, rng=rng, base_images=imgs, baseline_latencies=None,
                       clock=clock, model="<img src=x onerror=alert(1)>", prompts=[evil, "a & b", '"q"'],
                       with_series=False)
    base["environment"]["hostname"] = "<b>host</b>"
    results.append(run, base)
    odd = make_record("steps:n=5+<i>odd</i>", 2.0, 0.2, run_dir=run, rng=rng, base_images=imgs,
                      baseline_latencies=base["timing"]["latencies_s"], clock=clock,
                      model="<img src=x onerror=alert(1)>", with_series=False)
    results.append(run, odd)
    failed = make_record("bad", 1.0, 0.0, run_dir=run, rng=rng, base_images=imgs, baseline_latencies=None,
                         clock=clock, model="<img src=x onerror=alert(1)>", status="failed",
                         error=f"ValueError: {evil}")
    results.append(run, failed)
    page = build_report([run], tmp_path / "r.html").path.read_text()
    for raw in (evil, "<img src=x onerror", "<b>host</b>", "<i>odd</i>", "<b>1</b>"):
        assert raw not in page, raw
    assert html_lib.escape(evil, quote=True) in page or "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "&lt;i&gt;odd&lt;/i&gt;" in page and "&lt;b&gt;host&lt;/b&gt;" in page
    assert "a &amp; b" in page and "&#34;q&#34;" in page
    assert page.count("<script>") == 1  # only the report's own
