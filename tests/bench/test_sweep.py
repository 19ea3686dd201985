"""Sweep files: parsing, validation before anything loads, expansion into jobs, stable ids."""

import textwrap

import pytest
from click.testing import CliRunner

from bench import sweep
from bench.cli import main
from bench.sweep import SweepError
from bench.sweep.executors import Schedule

BASE = """
models = ["digits-unet"]
strategies = ["steps:n=4", "scheduler:name=unipc+steps:n=4"]
[settings]
batch_size = [1, 2]
steps = 6
[timing]
warmup = 0
iterations = 2
min_seconds = 0
[quality]
images = 4
"""


def _spec(text, tmp_path, name="s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return sweep.load(path, out_dir=tmp_path / "out")


def _plan(text, tmp_path, **kw):
    return sweep.validate(_spec(text, tmp_path), **kw)


def test_expansion_models_x_settings_x_stacks(tmp_path):
    plan = _plan(BASE, tmp_path)
    assert len(plan.jobs) == 2 * 3  # two batch sizes x (baseline + two stacks)
    groups = {}
    for j in plan.jobs:
        groups.setdefault(j.group, []).append(j.strategy)
    assert len(groups) == 2
    assert all(sorted(v) == sorted(["baseline", "steps:n=4", "scheduler:name=unipc+steps:n=4"])
               for v in groups.values())
    assert {j.settings.batch_size for j in plan.jobs} == {1, 2}
    assert {j.settings.steps for j in plan.jobs} == {6}
    assert len({j.id for j in plan.jobs}) == len(plan.jobs)


def test_baseline_images_have_one_producer_that_runs_first(tmp_path):
    plan = _plan(BASE, tmp_path)
    # Batch size does not change the quality images: one key, one producer for all six jobs.
    assert len({j.images_key for j in plan.jobs}) == 1
    producer = plan.jobs[0]
    assert producer.strategy == "baseline" and producer.after is None
    assert all(j.after == producer.id for j in plan.jobs[1:])
    # The schedule releases the others only once the producer is done.
    schedule = Schedule(plan.jobs)
    assert [j.id for j in schedule.take(4)] == [producer.id]
    assert schedule.take(4) == []
    schedule.done(producer.id)
    assert len(schedule.take()) == 5 and not schedule


def test_no_quality_images_means_no_waiting(tmp_path):
    plan = _plan(BASE.replace("images = 4", "images = 0"), tmp_path)
    assert all(j.after is None for j in plan.jobs)


def test_job_ids_are_stable_and_depend_on_what_is_measured(tmp_path):
    ids = {j.label: j.id for j in _plan(BASE, tmp_path).jobs}
    reordered = BASE.replace('["steps:n=4", "scheduler:name=unipc+steps:n=4"]',
                             '["steps:n=4+scheduler:name=unipc", "steps:n=4"]')
    reordered = reordered.replace("batch_size = [1, 2]", "batch_size = [2, 1]")
    again = {j.label: j.id for j in _plan(reordered + "\n[jobs]\ntimeout_s = 5\nworkers = 2\n", tmp_path).jobs}
    assert again == ids  # order, stack spelling, timeout and workers change no id
    more = {j.label: j.id for j in _plan(BASE.replace("iterations = 2", "iterations = 3"), tmp_path).jobs}
    assert set(more.values()).isdisjoint(ids.values())  # the measurement changed


def test_duplicate_and_baseline_stacks_collapse(tmp_path):
    plan = _plan(BASE.replace('strategies = ["steps:n=4", "scheduler:name=unipc+steps:n=4"]',
                              'strategies = ["baseline", "steps:n=4", "steps:n=4"]'), tmp_path)
    assert sorted(j.strategy for j in plan.jobs) == ["baseline", "baseline", "steps:n=4", "steps:n=4"]


def test_exclude_rules(tmp_path):
    text = BASE + """
[[exclude]]
strategy = "scheduler"
batch_size = 2
[[exclude]]
model = "digits-unet"
strategy = "steps:n=9"
"""
    plan = _plan(text, tmp_path)
    labels = [(j.settings.batch_size, j.strategy) for j in plan.jobs]
    assert (2, "scheduler:name=unipc+steps:n=4") not in labels
    assert (1, "scheduler:name=unipc+steps:n=4") in labels
    assert (2, "baseline") in labels  # baselines are never excluded
    assert plan.excluded == 1
    assert len(plan.warnings) == 1 and "matches no job" in plan.warnings[0]
    with pytest.raises(SweepError, match="baseline cannot be excluded"):
        _plan(BASE + '[[exclude]]\nstrategy = "baseline"\n', tmp_path)


@pytest.mark.parametrize("patch, message", [
    (("models = [\"digits-unet\"]", "models = [\"digits-unte\"]"), "did you mean 'digits-unet'"),
    (("\"steps:n=4\",", "\"stepz:n=4\","), "unknown strategy 'stepz'"),
    (("\"steps:n=4\",", "\"bf16+fp16\","), "cannot be stacked"),
    (("\"steps:n=4\",", "\"steps:n=0\","), "out of range"),
    (("batch_size = [1, 2]", "batch_size = [1, \"2\"]"), r"batch_size\[1\]: expected a whole number"),
    (("batch_size = [1, 2]", "batch_size = [1, 1]"), "listed twice"),
    (("batch_size = [1, 2]", "batch_size = []"), "empty list"),
    (("batch_size = [1, 2]", "batch_size = [0]"), ">= 1"),
    (("[settings]", "[settings]\nresolution = 32"), "16x16 images only"),
    (("[settings]", "[settings]\nresolution = \"16by16\""), "width x height"),
    (("[settings]", "[settings]\ndevice = \"cuda\""), "CUDA is not available"),
    (("[settings]", "[settings]\ndevice = \"tpu\""), "device"),
    (("[settings]", "[settings]\nbatchsize = 3"), "did you mean 'batch_size'"),
    (("[timing]", "[timing]\nwarmpu = 1"), "did you mean 'warmup'"),
    (("[quality]", "[quality]\nlpips_net = \"resnet\""), "lpips_net"),
    (("models = [", "plugins = [\"no_such_plugin_module\"]\nmodels = ["), "cannot be imported"),
    (("models = [\"digits-unet\"]", "models = []"), "at least one model"),
])
def test_bad_sweeps_are_refused_up_front(tmp_path, patch, message):
    old, new = patch
    assert old in BASE
    with pytest.raises(SweepError, match=message):
        _plan(BASE.replace(old, new, 1), tmp_path)


def test_model_specific_settings_are_refused_with_the_reason(tmp_path):
    text = BASE.replace('models = ["digits-unet"]', 'models = ["digits-unet", "digits-ar"]')
    with pytest.raises(SweepError, match="digits-ar is autoregressive: it has no denoising steps"):
        _plan(text, tmp_path)


def test_resolutions(tmp_path):
    assert sweep.parse_resolution(512) == (512, 512)
    assert sweep.parse_resolution("768x512") == (512, 768)  # (height, width)
    plan = _plan(BASE.replace("[settings]", "[settings]\nresolution = 16"), tmp_path)
    assert {j.settings.resolution for j in plan.jobs} == {(16, 16)}
    hub = BASE.replace('models = ["digits-unet"]', 'models = ["hf:/nowhere/pipeline"]')
    plan = _plan(hub.replace("[settings]", "[settings]\nresolution = [512, \"768x512\"]"), tmp_path)
    assert {j.settings.resolution for j in plan.jobs} == {(512, 512), (512, 768)}
    assert sweep.payload(plan.spec, plan.jobs[0])["settings"]["resolution"] in ([512, 512], [512, 768])
    with pytest.raises(SweepError, match="multiple of 8"):
        _plan(hub.replace("[settings]", "[settings]\nresolution = 500"), tmp_path)


def test_devices_of_a_cluster_are_not_checked_here(tmp_path):
    text = BASE.replace("[settings]", "[settings]\ndevice = \"cuda\"")
    with pytest.raises(SweepError, match="CUDA is not available"):
        _plan(text, tmp_path)
    plan = _plan(text, tmp_path, check_devices=False)  # a Ray cluster's workers have them
    assert {j.settings.device for j in plan.jobs} == {"cuda"}


def test_payload_is_plain_json_with_what_a_worker_needs(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path / "c"))
    plan = _plan(BASE, tmp_path)
    job = plan.jobs[1]
    data = json.loads(json.dumps(sweep.payload(plan.spec, job)))
    assert data["id"] == job.id and data["strategy"] == job.strategy
    assert data["run"]["timing"]["min_iterations"] == 2 and data["run"]["quality_images"] == 4
    assert data["env"]["ACCELBENCH_CACHE"] == str(tmp_path / "c")
    assert str(tmp_path) in data["sys_path"]  # the sweep file's folder, for plugins


def test_the_example_parses_and_validates(tmp_path):
    (tmp_path / "example.toml").write_text(sweep.EXAMPLE)
    spec = sweep.load(tmp_path / "example.toml", out_dir=tmp_path)
    plan = sweep.validate(spec)
    assert spec.timeout_s == 1800 and spec.quality_images == 100
    assert {j.model for j in plan.jobs} == {"digits-unet", "digits-dit"}
    assert plan.excluded == 2 and not plan.warnings  # channels-last on digits-dit, both batches


def test_cli_example_and_dry_run(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["sweep", "--example"])
    assert result.exit_code == 0 and result.output == sweep.EXAMPLE
    path = tmp_path / "s.toml"
    path.write_text(BASE)
    result = runner.invoke(main, ["sweep", str(path), "--dry-run", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "6 jobs (6 to run)" in result.output and result.output.count("to run") == 7
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    path.write_text(BASE.replace("steps:n=4\",", "stepz:n=4\","))
    result = runner.invoke(main, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 2 and "unknown strategy 'stepz'" in result.output
    result = runner.invoke(main, ["sweep", "--help"])
    assert "accelbench sweep --example" in result.output and "--retry-failed" in result.output
