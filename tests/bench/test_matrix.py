"""The compatibility matrix: cells from the engine's records, Markdown, the README block."""

from __future__ import annotations

import math

import pytest

from bench.sweep import matrix
from bench.sweep.matrix import Cell


def test_a_small_matrix_through_the_engine(tmp_path):
    cells = matrix.run_matrix(["arch:sd15@tiny"], ["steps:n=1", "speculative"], tmp_path,
                              iterations=2, warmup=0, quality_images=1, threads=1,
                              show_progress=False)
    by = {c.strategy: c for c in cells}
    assert set(by) == {"steps:n=1", "speculative"}
    assert by["steps:n=1"].status == "ok" and by["steps:n=1"].speedup > 0
    assert by["steps:n=1"].psnr is not None
    assert by["speculative"].status == "unsupported" and "autoregressive" in by["speculative"].reason
    assert matrix.read(tmp_path / "matrix.json") == cells
    assert "| `steps:n=1` |" in (tmp_path / "matrix.md").read_text()
    assert (tmp_path / "arch_sd15-tiny" / "results.jsonl").exists()


def test_markdown_and_readme_block(tmp_path):
    cells = [Cell("arch:a", "x", "ok", speedup=2.0, significant=True, psnr=math.inf,
                  ci_low=1.8, ci_high=2.2, p_value=0.002, ci_level=0.98, method="paired"),
             Cell("arch:b", "x", "unsupported", reason="no"),
             Cell("arch:a", "y", "failed", reason="boom"),
             Cell("arch:b", "y", "ok", speedup=0.9, significant=False, psnr=30.2, caveats=("c",),
                  ci_low=0.7, ci_high=1.1, p_value=0.3, ci_level=0.98, method="paired"),
             Cell("arch:a", "z", "same", reason="same as baseline: already 10 steps")]
    matrix.judge(cells)
    md = matrix.markdown(cells, reasons=True)
    assert "| `x` | 2.00x faster, exact | n/a |" in md
    assert "| `y` | FAILED | 0.90x inconclusive, 30 dB \u2020 |" in md
    assert "| `z` | same as baseline |  |" in md
    assert "(1 faster, 0 slower, 0 equivalent, 1 inconclusive), 1 same as baseline" in md
    assert "- `x` on b: unsupported: no" in md and "- `y` on a: failed: boom" in md
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{matrix.README_START}\nold\n{matrix.README_END}\nrest\n")
    matrix.update_readme(readme, cells, "accelbench matrix --out m")
    text = readme.read_text()
    assert "old" not in text and "| `x` | 2.00x faster, exact | n/a |" in text
    assert text.startswith("intro\n") and text.endswith("rest\n")
    other = tmp_path / "other.md"
    other.write_text("no markers here\n")
    with pytest.raises(ValueError, match="no .* block"):
        matrix.update_readme(other, cells, "x")


def test_a_compile_that_compiled_nothing_is_a_failed_cell():
    """Eager code timed under compile's name would read as "compile buys nothing"."""
    records = [
        {"strategy": "baseline", "status": "ok"},
        {"strategy": "compile:mode=default", "status": "ok", "cold": {"compiles": 0},
         "stats": {"speedup": {"ratio": 1.0}}},
        {"strategy": "bf16+compile:mode=default", "status": "ok", "cold": {"compiles": 2},
         "stats": {"speedup": {"ratio": 1.3}}},
    ]
    cells = {c.strategy: c for c in matrix._cells_from_records("arch:a", records)}
    assert cells["compile:mode=default"].status == "failed"
    assert "compiled anything" in cells["compile:mode=default"].reason
    assert cells["bf16+compile:mode=default"].status == "ok"


def test_every_engine_refusal_becomes_a_cell():
    message = ("no requested stack can run on arch:a:\n  speculative: not autoregressive\n"
               "  steps:n=2: no steps")
    cells = matrix.refused_cells("arch:a", ["speculative", "steps:n=2"], message)
    assert [(c.status, c.reason) for c in cells] == [("unsupported", "not autoregressive"),
                                                      ("unsupported", "no steps")]


def test_the_committed_matrix_has_no_failed_cell_and_is_the_readmes_table():
    """docs/matrix holds the tiny variants' matrix the README shows: no cell failed, the
    cells the project promises are ok, and the README's table is that matrix's."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cells = matrix.read(root / "docs" / "matrix" / "matrix.json")
    failed = [f"{c.strategy} on {c.model}: {c.reason}" for c in cells if c.status == "failed"]
    assert not failed
    status = {(c.model.removeprefix("arch:").removesuffix("@tiny"), c.strategy.split(":")[0]): c.status
              for c in cells if "+" not in c.strategy}
    promised = [(m, s) for m in ("sd15", "sdxl") for s in ("deepcache", "tome")]
    promised += [(m, "fbcache") for m in ("flux", "pixart-sigma", "sd3")]
    diffusion = ("sd15", "sdxl", "sd3", "flux", "pixart-sigma", "sana", "flux2", "qwen-image")
    distilled = ("flux2-klein", "z-image")  # 4 and 9 steps: steps:n=10 adds steps
    promised += [(m, s) for m in diffusion + distilled for s in ("quant", "compile")]
    # The 2025 caches and memory strategies, each on three families at least.
    promised += [(m, "magcache") for m in ("sd3", "flux", "flux2", "qwen-image")]
    promised += [(m, "seacache") for m in ("sd3", "pixart-sigma", "flux", "qwen-image")]
    promised += [(m, s) for m in ("sd15", "sdxl", "flux2", "z-image")
                 for s in ("offload", "layerwise-cast")]
    assert [p for p in promised if status.get(p) != "ok"] == []
    # steps:n=10 on tiny models that already run 10 steps: an A/A cell, recorded as such.
    assert {status.get((m, "steps")) for m in diffusion} == {"same"}
    assert {status.get((m, "steps")) for m in distilled} == {"ok"}
    assert not [c for c in cells if c.status == "ok" and c.verdict is None]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert matrix.markdown(cells) in readme
