"""The report's search section, from a tune folder's summary (no torch, no search run)."""

from __future__ import annotations

import json
import re

from reports import build_report, search
from tests.support.reports_synthetic import make_run


def _tune(folder):
    trials = [
        {"number": i, "stack": f"steps:n={n}", "state": "complete", "objective": n / 25,
         "quality": {"adherence": a, "fid": f}, "feasible": a >= 0.97}
        for i, (n, a, f) in enumerate([(4, 0.90, 5.0), (8, 0.98, 2.4), (12, 1.0, 2.2)])
    ] + [{"number": 3, "stack": "?", "state": "pruned", "reason": "cannot be stacked"}]
    doc = {"schema": "accelbench.tune/1", "seconds": 600.0,
           "config": {"model": "digits-unet", "objective": "latency",
                      "constraints": ["adherence>=0.97", "fid<=floor"]},
           "bounds": {"adherence>=0.97": 0.97, "fid<=floor": 2.6},
           "trials": trials,
           "candidates": [{"stack": "steps:n=8", "speedup": 3.0, "ci_low": 2.9, "ci_high": 3.1,
                           "objective": 0.33, "quality": {"adherence": 0.99, "fid": 2.3},
                           "feasible": True, "training_s": None}],
           "best": {"stack": "steps:n=8", "speedup": 3.0, "ci_low": 2.9, "ci_high": 3.1}}
    (folder / "tune.json").write_text(json.dumps(doc))
    return doc


def test_search_section_draws_every_trial_and_the_constraints(tmp_path):
    run = tmp_path / "tune"
    make_run(run, 2, with_series=False, extra=[])
    doc = _tune(run)
    sec = search.section(search.load(run), "tune")
    assert [p.kind for p in sec.plots] == ["search", "search"]  # one per constrained metric
    facts = dict(sec.facts)
    assert facts["trials"].startswith("4 (3 measured, 1 rejected before measuring")
    assert facts["best"].startswith("steps:n=8: 3.00")
    page = build_report([run], tmp_path / "r.html").path.read_text()
    assert 'id="search"' in page and len(re.findall(r'data-kind="search"', page)) == 2
    assert "candidate (measured in full)" in page and "steps:n=8" in page
    assert search.load(tmp_path) is None  # a plain run folder has no search
    doc["schema"] = "something else"
    (run / "tune.json").write_text(json.dumps(doc))
    assert search.load(run) is None
