"""The results store: append-only JSON Lines and the DataFrame view."""

import json
import math

import pytest

from bench.core import results


def _record(strategy="baseline", median=100.0, psnr=float("inf")):
    return {
        "run_id": "r1",
        "model": {"name": "digits-unet"},
        "strategy": strategy,
        "status": "ok",
        "settings": {"device": "cpu", "batch_size": 8, "steps": 25},
        "stats": {
            "latency_ms": {"median": median, "ci_low": median - 1, "ci_high": median + 1, "n": 5, "iqr": 0.5},
            "images_per_s": 8 / (median / 1000),
            "ms_per_image": median / 8,
            "speedup": {"ratio": 1.0, "ci_low": 0.9, "ci_high": 1.1, "p_value": 1.0},
        },
        "memory": {"peak_mb": 321.0},
        "quality": {"psnr": psnr, "ssim": 1.0, "adherence": 0.9},
    }


def test_append_and_load_roundtrip(tmp_path):
    results.append(tmp_path, _record())
    results.append(tmp_path / "results.jsonl", _record("bf16", 50.0, 30.0))
    df = results.load(tmp_path)
    assert list(df.columns[: len(results.COLUMNS)]) == results.COLUMNS
    assert list(df.strategy) == ["baseline", "bf16"]
    assert df.loc[0, "psnr"] == math.inf
    assert df.loc[1, "psnr"] == 30.0
    assert df.loc[1, "latency_ms_median"] == 50.0
    assert df.loc[1, "images_per_s"] == pytest.approx(160.0)
    assert df.loc[0, "peak_mem_mb"] == 321.0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert all(json.loads(line)["schema"] == results.SCHEMA for line in lines)


def test_torn_last_line_is_skipped_with_warning(tmp_path):
    results.append(tmp_path, _record())
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"schema": "accelbench.record/1", "strat')
    with pytest.warns(UserWarning, match="incomplete record"):
        df = results.load(tmp_path)
    assert len(df) == 1


def test_load_several_paths_and_missing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    results.append(a, _record())
    results.append(b, _record("bf16"))
    assert len(results.load([a, b])) == 2
    with pytest.raises(FileNotFoundError):
        results.load(tmp_path / "nowhere")
