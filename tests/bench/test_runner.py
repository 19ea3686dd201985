"""A whole run on the embedded model, end to end, with tiny settings."""

import json

import pytest

from bench import results
from bench.harness import TimingConfig
from bench.runner import RunConfig, Runner, parse_stacks
from strategies import StrategyError

TINY = TimingConfig(warmup=1, min_iterations=2, min_seconds=0)


def _config(tmp_path, strategies, **kw):
    return RunConfig(
        strategies=tuple(strategies),
        batch_size=4,
        timing=TINY,
        quality_images=8,
        out_dir=tmp_path,
        **kw,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Runner(
        _config(out, ["steps:n=4", "scheduler:name=unipc+steps:n=4", "fp16"], steps=6),
        show_progress=False,
    ).run()
    return out


def test_baseline_first_and_every_stack_recorded(run_dir):
    df = results.load(run_dir)
    assert list(df.strategy) == ["baseline", "steps:n=4", "scheduler:name=unipc+steps:n=4", "fp16"]
    assert df.loc[0, "steps"] == 6 and df.loc[1, "steps"] == 4
    ok = df[df.status == "ok"]
    assert ok.latency_ms_median.gt(0).all()
    assert (ok.latency_ms_ci_low <= ok.latency_ms_median).all()
    assert (ok.latency_ms_median <= ok.latency_ms_ci_high).all()
    assert ok.images_per_s.gt(0).all()
    assert ok.peak_mem_mb.gt(0).all()


def test_baseline_is_its_own_reference(run_dir):
    df = results.load(run_dir).set_index("strategy")
    assert df.loc["baseline", "psnr"] == float("inf")
    assert df.loc["baseline", "ssim"] == pytest.approx(1.0)
    assert df.loc["steps:n=4", "psnr"] < 100
    assert 0 <= df.loc["steps:n=4", "adherence"] <= 1


def test_unsupported_strategy_is_a_row_with_its_reason(run_dir):
    record = [r for r in results.iter_records(run_dir) if r["strategy"] == "fp16"][0]
    from strategies.precision import cpu_flags

    if {"avx512_fp16", "amx_fp16"} & cpu_flags():
        assert record["status"] == "ok"
    else:
        assert record["status"] == "unsupported"
        assert "no native float16" in record["error"]


def test_raw_samples_environment_and_images_are_kept(run_dir):
    record = next(results.iter_records(run_dir))
    assert len(record["timing"]["latencies_s"]) == record["stats"]["latency_ms"]["n"] >= 2
    assert all(len(steps) == 6 for steps in record["timing"]["step_times_s"])
    env = record["environment"]
    assert env["packages"]["torch"] and env["packages"]["diffusers"] and env["cpu"]
    assert record["config"]["batch_size"] == 4
    assert (run_dir / record["images"]).exists()
    assert record["cold"]["load_s"] > 0 and record["cold"]["first_call_s"] > 0
    json.dumps(record)  # plain JSON


def test_baseline_is_timed_again_to_expose_drift(run_dir):
    import json

    drift = json.loads((run_dir / "run.json").read_text())["baseline_drift"]
    assert drift["first_ms"] > 0 and drift["last_ms"] > 0
    assert drift["ratio"] == pytest.approx(drift["last_ms"] / drift["first_ms"])
    assert len(drift["latencies_s"]) >= 2


def test_baseline_images_are_cached(tmp_path, monkeypatch):
    from bench import baseline_cache

    calls = []
    real_put = baseline_cache.put
    monkeypatch.setattr(baseline_cache, "put", lambda k, im: (calls.append(k), real_put(k, im)))
    for sub in ("a", "b"):
        Runner(_config(tmp_path / sub, ["baseline"], steps=3), show_progress=False).run()
    assert len(calls) == 1  # the second run found the first one's images


def test_bad_stacks_fail_before_loading():
    with pytest.raises(StrategyError, match="did you mean"):
        parse_stacks(["bf61"], "cpu")
    assert [s.spec for s in parse_stacks(["steps:n=3", "steps:n=3"], "cpu")] == [
        "baseline",
        "steps:n=3",
    ]
