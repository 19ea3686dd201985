"""The measurement engine, end to end on the embedded model with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.core import results
from bench.core.config import RunConfig, TimingConfig
from bench.measure.engine import Engine, EngineError, plan_stacks
from bench.measure.samplers import series
from strategies import StrategyError

TINY = TimingConfig(warmup=1, min_iterations=6, min_seconds=0)


def _config(tmp_path, strategies, **kw):
    kw.setdefault("timing", TINY)
    return RunConfig(strategies=tuple(strategies), batch_size=2, quality_images=8,
                     out_dir=tmp_path, threads=1, sample_interval_s=0.01, **kw)


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory):
    out = tmp_path_factory.mktemp("interleaved")
    result = Engine(_config(out, ["steps:n=2", "speculative", "scheduler:name=unipc+steps:n=2"],
                            steps=4), show_progress=False).run()
    return out, result


def test_every_stack_is_a_record_reference_first(interleaved):
    out, result = interleaved
    # Written as they finish, the reference first; those refused before timing right after it.
    df = results.load(out)
    assert list(df.strategy) == ["baseline", "speculative", "steps:n=2", "scheduler:name=unipc+steps:n=2"]
    assert list(df.status) == ["ok", "unsupported", "ok", "ok"]
    assert [r["strategy"] for r in result.records] == [
        "baseline", "steps:n=2", "speculative", "scheduler:name=unipc+steps:n=2"]
    assert "autoregressive" in df.set_index("strategy").loc["speculative", "error"]
    assert set(df.schedule.dropna()) == {"interleaved"}
    steps = df.set_index("strategy")["steps"]
    assert steps["baseline"] == 4 and steps["steps:n=2"] == 2
    assert result.schedule["name"] == "interleaved" and "fit in memory" in result.schedule["reason"]


def test_interleaved_rounds_alternate_and_speedups_are_paired(interleaved):
    out, _ = interleaved
    records = [r for r in results.iter_records(out) if r["status"] == "ok"]
    for r in records:
        assert r["timing"]["rounds"] == list(range(6))
        assert r["schedule"]["name"] == "interleaved" and r["schedule"]["rounds"] == 6
    # In each round the stacks ran one after another, in reversed order every other round.
    starts = {r["strategy"]: [b[0] for b in r["timing"]["bounds"]] for r in records}
    names = list(starts)
    for k in range(6):
        order = sorted(names, key=lambda n: starts[n][k])
        assert order == (names if k % 2 == 0 else names[::-1])
    sp = records[1]["stats"]["speedup"]
    assert sp["method"].startswith("paired") and sp["n"] == 6
    base = np.array(records[0]["timing"]["latencies_s"])
    cand = np.array(records[1]["timing"]["latencies_s"])
    assert sp["ratio"] == pytest.approx(float(np.exp(np.median(np.log(base / cand)))))
    assert sp["ci_low"] <= sp["ratio"] <= sp["ci_high"]


def test_each_stack_gets_its_own_samples_memory_energy_and_series(interleaved):
    out, _ = interleaved
    for r in results.iter_records(out):
        if r["status"] != "ok":
            continue
        assert r["sampler"]["summary"]["windows"] == 6
        mem = r["memory"]
        # The stack's own figures: its weights plus one call made alone, not the process's
        # RSS, which holds every interleaved stack.
        assert mem["peak_mb"] == pytest.approx(mem["weights_mb"] + mem["activations_mb"])
        assert mem["weights_mb"] > 0 and mem["activations_mb"] >= 0 and mem["added_mb"] == 0
        assert mem["process_peak_rss_mb"] > mem["peak_mb"]
        assert mem["rss_hwm_mb"] is None  # the kernel's mark is not attributable when interleaved
        energy = r["energy"]
        assert energy["windows"] == 6
        if energy["energy_j"] is None:
            assert energy["method"] == "unavailable" and energy["reason"]
        else:
            assert energy["method"] == "rapl-package-counter" and energy["images"] == 12
        columns, meta = series.read(out / r["series_file"])
        own = [tuple(b) for b in r["timing"]["warmup_bounds"] + r["timing"]["bounds"]]
        assert len(columns["t"]) > 0 and meta["strategy"] == r["strategy"]
        assert all(any(a <= t <= b for a, b in own) for t in columns["t"])


def test_size_cold_costs_load_and_environment(interleaved):
    out, _ = interleaved
    base, fewer = [r for r in results.iter_records(out) if r["status"] == "ok"][:2]
    for r in (base, fewer):
        size = r["model_size"]
        assert size["params"] == r["model"]["params"] > 1_000_000
        assert size["flops_per_step"] > 0 and size["per"] == "step"
        assert size["flops_once"] > 0  # the text encoder, once per call
        assert size["flops_per_image"] == pytest.approx(
            size["flops_per_step"] * r["settings"]["steps"] + size["flops_once"])
        assert r["cold"]["load_s"] > 0 and r["cold"]["apply_s"] >= 0 and r["cold"]["first_call_s"] > 0
        assert r["load"]["torch_threads"] == 1 and r["load"]["cores"] >= 1
        assert r["environment"]["packages"]["torch"] and r["model"]["base_fingerprint"]
    # A call of 2 steps costs about half of one of 4 steps; each step costs the same.
    assert fewer["model_size"]["flops_per_image"] == pytest.approx(base["model_size"]["flops_per_image"] / 2, rel=0.01)
    assert fewer["model_size"]["flops_per_step"] == pytest.approx(base["model_size"]["flops_per_step"])
    assert fewer["model_size"]["flops_once"] == pytest.approx(base["model_size"]["flops_once"])
    assert base["quality"]["psnr"] == "inf" and base["quality"]["ssim"] == pytest.approx(1.0)
    assert fewer["quality"]["psnr"] < 100 and 0 <= fewer["quality"]["adherence"] <= 1
    assert (out / base["images"]).exists()
    run = json.loads((out / "run.json").read_text())
    assert run["schedule"]["name"] == "interleaved" and run["load"]["cores"] >= 1


def test_sequential_runs_each_stack_alone_and_rechecks_the_baseline(tmp_path):
    config = _config(tmp_path, ["steps:n=2"], steps=4, schedule="sequential",
                     timing=TimingConfig(warmup=1, min_iterations=3, min_seconds=0))
    result = Engine(config, show_progress=False).run()
    base, fewer = result.records
    assert base["schedule"]["name"] == fewer["schedule"]["name"] == "sequential"
    assert base["timing"]["bounds"][-1][1] < fewer["timing"]["bounds"][0][0]  # one, then the other
    assert fewer["stats"]["speedup"]["method"].startswith("independent")
    assert fewer["memory"]["rss_hwm_mb"] > 0  # the high-water mark is the stack's own here
    assert fewer["memory"]["weights_mb"] == pytest.approx(base["memory"]["weights_mb"])
    drift = json.loads((tmp_path / "run.json").read_text())["baseline_drift"]
    assert drift["ratio"] == pytest.approx(drift["last_ms"] / drift["first_ms"])
    assert len(drift["latencies_s"]) == 3


def test_a_run_whose_every_requested_stack_is_refused_stops_before_the_baseline(tmp_path, monkeypatch):
    from bench.measure import baseline_cache

    generated = []
    monkeypatch.setattr(baseline_cache, "put", lambda k, im: generated.append(k))
    with pytest.raises(EngineError, match="no requested stack can run") as err:
        Engine(_config(tmp_path, ["speculative", "no-kv-cache"]), show_progress=False).run()
    assert "speculative" in str(err.value) and "no-kv-cache" in str(err.value)
    assert generated == [] and not (tmp_path / "results.jsonl").exists()


def test_baseline_images_are_cached(tmp_path, monkeypatch):
    from bench.measure import baseline_cache

    calls = []
    real_put = baseline_cache.put
    monkeypatch.setattr(baseline_cache, "put", lambda k, im: (calls.append(k), real_put(k, im)))
    for sub in ("a", "b"):
        Engine(_config(tmp_path / sub, ["baseline"], steps=3,
                       timing=TimingConfig(warmup=0, min_iterations=1, min_seconds=0)),
               show_progress=False).run()
    assert len(calls) == 1  # the second run found the first one's images


def test_bad_stacks_fail_before_loading():
    with pytest.raises(StrategyError, match="did you mean"):
        plan_stacks(["bf61"], "cpu")
    stacks, refused = plan_stacks(["steps:n=3", "steps:n=3"], "cpu")
    assert [s.spec for s in stacks] == ["baseline", "steps:n=3"] and refused == {}


def test_config_is_checked(tmp_path):
    with pytest.raises(ValueError, match="not an accelbench tree"):
        RunConfig(baseline_src=str(tmp_path))
    with pytest.raises(ValueError, match="schedule"):
        RunConfig(schedule="random")
    with pytest.raises(ValueError, match="block"):
        RunConfig(block=0)
    with pytest.raises(ValueError, match="target_ci"):
        TimingConfig(target_ci=1.5)


def test_quality_images_default_to_the_models_kind(monkeypatch):
    """200 images where the model has data; 16 on random-weight models, where only fidelity
    to their own baseline means something; an explicit count always wins."""
    from types import SimpleNamespace

    from bench.core import smoke

    monkeypatch.delenv(smoke.ENV, raising=False)
    with_data, random_weights = SimpleNamespace(random_weights=False), SimpleNamespace(random_weights=True)
    assert RunConfig().for_model(with_data).quality_images == 200
    assert RunConfig().for_model(random_weights).quality_images == 16
    assert RunConfig(quality_images=5).for_model(random_weights).quality_images == 5
    monkeypatch.setenv(smoke.ENV, "1")
    assert RunConfig().for_model(with_data).quality_images == smoke.CAPS["quality_images"]
    with pytest.raises(ValueError, match="quality images"):
        RunConfig(quality_images=-1)


@pytest.mark.slow
def test_code_against_code_measures_both_trees_in_alternation(tmp_path):
    """Two copies of this tree, each in its own worker process, interleaved."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    other = tmp_path / "other"
    for name in ("bench", "strategies"):
        shutil.copytree(root / name, other / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = _config(tmp_path / "run", ["steps:n=1"], steps=2, baseline_src=str(other),
                     current_src=str(root), schedule="interleaved")
    result = Engine(config, show_progress=False).run()
    assert [r["strategy"] for r in result.records] == ["baseline", "steps:n=1"]
    assert [r["strategy"] for r in result.baseline_records] == ["baseline", "steps:n=1"]
    assert all(r["status"] == "ok" for r in result.records + result.baseline_records)
    assert result.baseline_records[0]["interleave"]["src"] == str(other.resolve())
    cur, base = result.records[1], result.baseline_records[1]
    assert cur["run_id"] == base["run_id"] and cur["timing"]["rounds"] == base["timing"]["rounds"]
    assert cur["quality"]["psnr"] == pytest.approx(base["quality"]["psnr"])  # the same code
    from bench import gate

    verdict = gate.gate_paths([result.out_dir], [result.baseline_dir], gate.Rules(max_slowdown=0.5))
    assert all(c.test.startswith("sign test") for c in verdict.checks if c.kind == "latency")


def test_code_against_code_shares_the_local_call_settings():
    """Both paths set steps and resolution through one function, with its checks; a worker
    that reports another call (a tree from before a setting reached workers) is refused."""
    from types import SimpleNamespace

    from bench.measure.code_against_code import _call_settings_differ, apply_call_settings
    from strategies import StrategyError

    base = SimpleNamespace(name="m", call_args={"num_inference_steps": 25, "height": 64, "width": 64})
    apply_call_settings(base, RunConfig(model="arch:sd15@tiny", steps=4, resolution=(32, 32)))
    assert base.call_args == {"num_inference_steps": 4, "height": 32, "width": 32}
    with pytest.raises(StrategyError, match="no denoising step count"):
        apply_call_settings(SimpleNamespace(name="ar", call_args={}), RunConfig(steps=4))
    same = {"describe": {"call_args": dict(base.call_args)}}
    assert _call_settings_differ(base, same) is None
    older = {"describe": {"call_args": {"num_inference_steps": 4, "height": 64, "width": 64}}}
    why = _call_settings_differ(base, older)
    assert "height 64 (asked 32)" in why and "width 64 (asked 32)" in why


@pytest.mark.slow
def test_code_against_code_runs_both_trees_at_the_asked_resolution(tmp_path):
    """``--baseline-src OTHER --resolution``: both sides' workers generate at that size (the
    worker used to drop it while the records said it), checked from what each side reports."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    other = tmp_path / "other"
    for name in ("bench", "strategies"):
        shutil.copytree(root / name, other / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = _config(tmp_path / "run", ["steps:n=1"], model="arch:sd15@tiny", steps=2, resolution=(32, 32),
                     baseline_src=str(other), current_src=str(root))
    result = Engine(config, show_progress=False).run()
    records = result.records + result.baseline_records
    assert len(records) == 4 and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    for r in records:
        assert (r["model"]["call_args"]["height"], r["model"]["call_args"]["width"]) == (32, 32)
        assert r["settings"]["resolution"] == [32, 32]


def _tree_before_the_layers(tmp_path):
    """The accelbench tree as it was just before bench/ was split into layers (the parent of
    the commit that added ``bench/core``), or None outside a git checkout with that history."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    git = ["git", "-C", str(root)]
    try:
        added = subprocess.run([*git, "log", "--diff-filter=A", "--format=%H", "--",
                                "bench/core/__init__.py"], capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    if not added or subprocess.run([*git, "rev-parse", "--verify", "-q", f"{added[-1]}^"],
                                   capture_output=True).returncode:
        return None  # a shallow clone: the commit before the move is not here
    moved = added[-1]
    other = tmp_path / "before"
    other.mkdir()
    archive = subprocess.run([*git, "archive", f"{moved}^", "bench", "strategies"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
    return other


@pytest.mark.slow
def test_code_against_code_works_against_the_tree_from_before_the_layers(tmp_path):
    """The current tree's worker still drives a checkout from before the move (its stable
    contracts: ``bench.models.load_model``, ``bench.models.base.ModelSpec``,
    ``strategies.parse_stack``), and both sides measure the same images."""
    other = _tree_before_the_layers(tmp_path)
    if other is None:
        pytest.skip("not a git checkout with the history of the move")
    config = _config(tmp_path / "run", ["steps:n=1"], steps=2, baseline_src=str(other))
    result = Engine(config, show_progress=False).run()
    records = result.records + result.baseline_records
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert result.baseline_records[0]["interleave"]["src"] == str(other.resolve())
    assert records[1]["quality"]["psnr"] == pytest.approx(result.baseline_records[1]["quality"]["psnr"])
