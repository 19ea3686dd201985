"""The report's edges: series files of every format, missing files, energy plots, the
``accelbench report`` command, and building without torch. Fixtures are real records written
with ``bench.core.results.append`` (synthetic numbers, see ``tests/support/reports_synthetic.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bench.core import results
from reports import build_report
from reports.data import read_series
from tests.support.reports_synthetic import make_run

ROOT = Path(__file__).resolve().parents[2]


def _figures(page: str) -> list[str]:
    return re.findall(r'<figure class="plot" data-kind="([a-z-]+)"', page)


def test_series_files_of_both_formats(tmp_path):
    import pandas as pd

    cols = {"t": [1.0, 1.1, 1.2], "rss_mb": [10.0, 11.0, 12.0], "iteration": [-1, 0, 1]}
    frame = pd.DataFrame(cols)
    frame.to_parquet(tmp_path / "s.parquet")
    np.savez_compressed(tmp_path / "s.npz", **{k: np.asarray(v) for k, v in cols.items()},
                        __meta__=np.asarray("{}"))
    for name in ("s.parquet", "s.npz"):
        got = read_series(tmp_path / name)
        assert got is not None and got["rss_mb"].tolist() == [10.0, 11.0, 12.0], name
    assert read_series(tmp_path / "missing.parquet") is None
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert read_series(tmp_path / "broken.parquet") is None
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "no_t.parquet")
    assert read_series(tmp_path / "no_t.parquet") is None


def test_report_without_series_images_or_timings_degrades(tmp_path):
    run = tmp_path / "run"
    make_run(run, 2, with_series=False, extra=[])
    for rec_path in (run / "images").iterdir():
        rec_path.unlink()  # image files lost when the run was copied
    rep = build_report([run], tmp_path / "r.html")
    page = rep.path.read_text()
    assert "No sampler time series" in page
    assert "image file missing" in page
    assert rep.grids == 0 and "timeline" not in _figures(page)


def test_energy_pareto_where_energy_exists(tmp_path):
    run = tmp_path / "run"
    make_run(run, 2, with_energy=True, with_series=False, extra=[])
    page = build_report([run], tmp_path / "r.html").path.read_text()
    assert _figures(page).count("pareto-energy") == 5
    assert "energy J / image" in page


def test_cli_report(tmp_path):
    from bench.cli import main

    run = tmp_path / "run"
    make_run(run, 2, with_series=False, with_quality=False, extra=[])
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report.html").is_file() and "report.html" in res.output
    out = tmp_path / "x" / "custom.html"
    res = CliRunner().invoke(main, ["report", str(run), "-o", str(out), "--title", "My <title>"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and str(out) in res.output
    assert "<title>My &lt;title&gt;</title>" in out.read_text()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "does not exist" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["report", str(empty)])
    assert res.exit_code == 2 and "no results" in res.output
    (empty / "results.jsonl").write_text("")  # a run killed before its first record
    res = CliRunner().invoke(main, ["report", str(empty)])
    assert res.exit_code == 2 and "nothing to report" in res.output and "no records" in res.output
    assert not (empty / "report.html").exists()
    refused = tmp_path / "refused"
    for r in results.iter_records(run):
        results.append(refused, {**r, "status": "unsupported", "error": "no"})
    res = CliRunner().invoke(main, ["report", str(refused)])
    assert res.exit_code == 2 and "none of them ok" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["run", "--help"])
    assert "--no-report" in res.output


_NO_TORCH = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, _Block())
from bench.cli import main
main(["report", sys.argv[1], "-o", sys.argv[2]], standalone_mode=False)
assert "torch" not in sys.modules
print("ok")
"""


def test_report_builds_without_torch(tmp_path):
    run = tmp_path / "run"
    make_run(run, 2, with_series=False, with_quality=False, extra=[])
    out = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, str(run), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok") and out.is_file()


def test_sparse_and_odd_records_do_not_break_the_report(tmp_path):
    from bench.core import results

    run = tmp_path / "run"
    run.mkdir()
    results.append(run, {"strategy": "bare", "status": "ok"})
    results.append(run, {
        "strategy": "baseline", "model": {"name": "m"}, "status": "ok",
        "quality": {"psnr": "inf", "odd": {"nested": 1}},
        "quality_meta": {"psnr": {"higher_is_better": 1, "unit": "dB"}},
        "timing": {"latencies_s": [0.1, "nan"], "step_times_s": [[0.01, None]], "bounds": []},
        "stats": {"ms_per_image": 10.0}, "series_file": "gone.parquet", "images": "gone.png",
    })
    results.append(run, {"strategy": "broken", "model": {"name": "m"}, "status": "failed"})
    rep = build_report([run], tmp_path / "r.html")
    page = rep.path.read_text()
    assert rep.entries == 3 and "no reason recorded" in page
    assert "image file missing" in page


def test_extra_statistics_become_columns(tmp_path):
    """Figures load() adds beyond its fixed columns (autoregressive tokens/s...) are tabled."""
    from bench.core import results

    run = tmp_path / "run"
    recs = make_run(run, 2, with_series=False, with_quality=False, extra=[])
    results.results_path(run).unlink()
    for r in recs:
        r["stats"].update(tokens_per_s=123.0, acceptance_rate=0.7)
        results.append(run, r)
    page = build_report([run], tmp_path / "r.html").path.read_text()
    assert ">tokens / s<" in page and ">acceptance rate<" in page and 'data-v="123.0"' in page
