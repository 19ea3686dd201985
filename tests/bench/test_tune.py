"""The search: its space from the registry, constraints, and resuming after a kill."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from bench.tune import Constraint, TuneConfig, TuneError, parse_budget, search_space
from bench.tune.search_space import Incompatible

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def space(digits_unet):
    return search_space.derive(digits_unet, allow_training=True)


def test_every_supported_strategy_and_declared_parameter_is_in_the_space(space, digits_unet):
    from strategies.core.registry import get_strategy, names

    for name in names():
        if name == "baseline":
            continue
        cls = get_strategy(name)
        if cls().supports(digits_unet):
            assert name in space.excluded and name not in space.strategies
            continue
        assert name in space.strategies
        if cls.exclusive_group:
            assert name in space.groups[cls.exclusive_group]
        dims = {d.name: d for d in space.dimensions[name]}
        for f in dataclasses.fields(cls.Config):
            got = search_space.dimension(name, cls.Config, f)
            if isinstance(got, str):  # not searched, and the space says why
                assert f.name not in dims and space.fixed[f"{name}.{f.name}"] == got
                continue
            d = dims[f.name]
            if f.metadata.get("choices"):
                assert d.kind == "categorical" and d.choices == tuple(f.metadata["choices"])
            elif d.kind in ("int", "float"):
                assert d.high == f.metadata["high"]
                assert d.low == f.metadata["low"] or (d.low == 1 and d.log)  # counts from 1


def test_training_strategies_join_only_when_allowed(digits_unet):
    lean = search_space.derive(digits_unet)
    assert "distill" not in lean.strategies and "allow-training" in lean.excluded["distill"]


def test_trainings_are_searched_only_through_their_outcome_knobs(space):
    """Each value of a training's steps, rate, batch or seed would mean a new training: the
    space keeps them at their defaults and searches what changes the trained result's use."""
    for name, knobs in {"consistency": ("train_steps", "lr", "batch_size", "seed", "ema", "guidance"),
                        "distill": ("steps", "lr", "batch_size", "seed"),
                        "prune-structured": ("steps", "lr", "seed")}.items():
        searched = {d.name for d in space.dimensions[name]}
        assert not searched & set(knobs), name
        assert all("search=False" in space.fixed[f"{name}.{k}"] for k in knobs)
    assert "steps" in {d.name for d in space.dimensions["consistency"]}


def test_declared_setup_knobs_and_unsearchable_fields_keep_their_defaults():
    from strategies import param
    from strategies.core.base import StrategyConfig

    @dataclasses.dataclass(frozen=True)
    class Config(StrategyConfig):
        a: int = param(3, "a count", low=1, high=8)
        b: int = param(400, "training steps", low=0, high=10_000, search=False)
        c: str = param("x", "free text")
        d: float = param(0.01, "a rate", low=1e-4, high=1.0)

    got = {f.name: search_space.dimension("s", Config, f) for f in dataclasses.fields(Config)}
    assert got["a"] == search_space.Dimension("s", "a", "int", low=1, high=8, default=3)
    assert "search=False" in got["b"] and "free text" in got["c"]
    assert got["d"].log  # four decades: searched on a log scale


def _fixed(space, **changes):
    """A FixedTrial: nothing on, every parameter at its default, then ``changes``."""
    params = {f"group.{g}": search_space.NONE for g in space.groups}
    params |= {f"use.{t}": False for t in space.toggles}
    for dims in space.dimensions.values():
        for d in dims:
            params[d.key] = d.default if d.default is not None else (d.choices[0] if d.choices else d.low)
    return optuna.trial.FixedTrial(params | changes)


def test_exclusive_groups_cannot_both_be_proposed_and_incompatible_stacks_are_refused(space):
    for group, members in space.groups.items():
        spec = search_space.propose(_fixed(space, **{f"group.{group}": members[0]}), space)
        assert spec.split(":")[0] == members[0] and "+" not in spec
    assert search_space.propose(_fixed(space), space) == "baseline"
    refused = _fixed(space, **{"group.token merging": "tome", "tome.ratio": 0.7, "tome.sx": 1, "tome.sy": 1})
    with pytest.raises(Incompatible, match="tome"):
        search_space.propose(refused, space)


@pytest.mark.parametrize("text,metric,op,value", [
    ("adherence>=0.97", "adherence", ">=", 0.97),
    ("fid<=floor", "fid", "<=", None),
    (" psnr >= 30 ", "psnr", ">=", 30.0),
    ("kid<=1e-3", "kid", "<=", 0.001),
])
def test_constraints_parse(text, metric, op, value):
    c = Constraint.parse(text)
    assert (c.metric, c.op, c.amount) == (metric, op, value)


@pytest.mark.parametrize("text,message", [
    ("adherance>=0.9", "did you mean adherence"),
    ("fid<floor", "write metric>=value"),
    ("fid:+10%", "write metric>=value"),
    ("psnr>=floor", "noise band of a distribution metric"),
    ("fid>=floor", "lower-is-better"),
    ("speed>=2", "unknown metric"),
])
def test_bad_constraints_say_what_is_wrong(text, message):
    with pytest.raises(TuneError, match=message):
        Constraint.parse(text)


def test_floor_bounds_and_violations():
    baseline = {"quality": {"fid": 2.0, "adherence": 1.0},
                "quality_noise_floor": {"fid": {"std": 0.25}, "adherence": {"std": 0.01}}}
    fid, adh = Constraint.parse("fid<=floor"), Constraint.parse("adherence>=floor")
    assert fid.bound(baseline) == pytest.approx(2.5) and adh.bound(baseline) == pytest.approx(0.98)
    assert fid.violation(2.4, 2.5) < 0 < fid.violation(2.6, 2.5)
    assert adh.violation(0.99, 0.98) < 0 < adh.violation(0.95, 0.98)
    assert fid.violation(None, 2.5) > 1e6  # not measured: never feasible


def test_budgets_and_config_checks():
    assert parse_budget("30m") == 1800 and parse_budget("1h") == 3600 and parse_budget("90") == 90
    with pytest.raises(TuneError, match="bad budget"):
        parse_budget("soon")
    with pytest.raises(TuneError, match="objective"):
        TuneConfig(model="digits-unet", objective="speed")


def _tune(out: Path, trials: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.cli", "tune", "-c", "psnr>=5", "--budget", "20m", "-b", "1",
           "--cheap-images", "2", "--full-images", "2", "--trials", str(trials), "-s", "steps",
           "--threads", "1", "-o", str(out), "--quiet"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)


def _finished_trials(out: Path) -> list[int]:
    db = out / "study.db"
    if not db.exists():
        return []
    try:
        (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
        study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    except Exception:  # noqa: BLE001 - the first process may still be creating it
        return []
    return [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


@pytest.mark.slow
def test_a_killed_tune_resumes_without_losing_finished_trials(tmp_path):
    out = tmp_path / "tune"
    proc = _tune(out, trials=6)
    deadline = time.time() + 600
    while len(_finished_trials(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(1)
    before = _finished_trials(out)
    assert len(before) >= 2, proc.stdout.read() if proc.poll() is not None else "no trial finished"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    jobs_before = (out / "results.jsonl").read_text().count('"job_id"')
    again = _tune(out, trials=6)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    after = _finished_trials(out)
    assert set(before) <= set(after) and len(after) >= 6
    summary = json.loads((out / "tune.json").read_text())
    assert summary["best"] is not None and summary["best"]["feasible"]
    # Finished jobs were not measured again: one record per distinct stack.
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ids = [r["sweep"]["job_id"] for r in records]
    assert len(ids) == len(set(ids)) and len(ids) >= jobs_before


# -- the search keeps its promises: step bound, one Pareto front, pruning, the budget ---------
def test_a_search_for_speed_keeps_the_step_count_below_the_models(digits_unet):
    """The declared 1..1000 drew 652 steps for a 25-step model (0.04x, 11 minutes)."""
    from bench.tune import search_space

    fast = search_space.derive(digits_unet, for_speed=True)
    (n,) = [d for d in fast.dimensions["steps"] if d.name == "n"]
    assert (n.low, n.high) == (1, digits_unet.steps - 1) and "steps.n" in fast.bounded
    (free,) = [d for d in search_space.derive(digits_unet).dimensions["steps"] if d.name == "n"]
    assert free.high == 1000


def test_tunes_front_ranks_a_missing_metric_worst():
    """A row whose FID is missing (None or NaN) is never on the front; before, it ranked best."""
    from bench.tune.tuner import _front

    def row(stack, objective, fid):
        return {"stack": stack, "objective": objective, "quality": {"psnr": 30.0, "adherence": 1.0, "fid": fid}}

    rows = [row("a", 0.3, 2.0), row("b", 0.2, math.nan), row("c", 0.25, None), row("d", 0.5, 1.5)]
    front = _front(rows, ["psnr", "adherence", "fid"])
    assert [r["stack"] for r in front] == ["a", "d"]


def _tuner_with(tmp_path, budget_s, baseline_call_s, **kw):
    from bench.tune import Tuner

    tuner = Tuner(TuneConfig(model="digits-unet", budget_s=budget_s, out_dir=tmp_path,
                             constraints=(Constraint.parse("adherence>=0.97"),), **kw))
    tuner.baseline = {"timing": {"latencies_s": [baseline_call_s] * 6}}
    tuner._batch_s = [30.0]
    return tuner


def test_the_final_measurement_shrinks_to_fit_what_is_left(tmp_path):
    from bench.tune import Trial
    from bench.tune.budget import MIN_FULL_ITERATIONS

    trials = [Trial(1, "steps:n=5", "complete", speedup=5.0), Trial(2, "deepcache", "complete", speedup=2.0)]
    roomy = _tuner_with(tmp_path, 3600, 1.0)
    assert roomy._final_plan(["steps:n=5", "deepcache"], trials)[:3] == (["steps:n=5", "deepcache"], 10, 200)
    tight = _tuner_with(tmp_path, 110, 1.0, cheap_quality_images=64)
    plan = tight._final_plan(["steps:n=5", "deepcache"], trials)
    assert plan is not None
    chosen, n, images, _ = plan
    assert images < 200 and n >= MIN_FULL_ITERATIONS
    assert tight._final_s([5.0, 2.0][:len(chosen)], n, images) <= tight._left()
    assert _tuner_with(tmp_path, 40, 1.0)._final_plan(["steps:n=5"], trials) is None


def test_no_trial_is_started_that_would_leave_no_room_for_the_final(tmp_path):
    tuner = _tuner_with(tmp_path, 120, 1.0)
    assert not tuner._room_for_a_trial()  # 2 x 30 s of trial + the smallest final > 105 s
    assert _tuner_with(tmp_path, 1800, 1.0)._room_for_a_trial()


def test_a_pruned_trial_is_recorded_as_pruned_with_its_ratio(tmp_path):
    from bench.tune import Tuner

    tuner = Tuner(TuneConfig(model="digits-unet", out_dir=tmp_path, constraints=(Constraint.parse("adherence>=0.97"),)))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="t")
    assert tuner._prune_limit(study) is None  # nothing measured yet: nothing to prune against
    done = study.ask()
    done.set_user_attr("speedup", 3.5)
    study.tell(done, 0.28)
    assert tuner._prune_limit(study) == 3.5
    trial = study.ask()
    record = {"status": "pruned", "error": "pruned: 5.00x slower than the reference after 1 round(s)",
              "timing": {"latencies_s": [5.0]}, "reference": {"latencies_s": [1.0]}}
    tuner._tell_pruned(study, trial, "steps:n=24", record)
    (t,) = [t for t in study.get_trials() if t.number == trial.number]
    assert t.state.name == "PRUNED" and t.intermediate_values == {1: 5.0}
    assert t.user_attrs["reason"].startswith("pruned: 5.00x")


def test_screening_puts_every_strategy_alone_at_its_defaults(space):
    from bench.tune import search_space

    singles = search_space.singles(space)
    assert len(singles) == len(space.strategies) + 1  # and the scheduler with the step count
    study = optuna.create_study()
    specs = []
    for params in singles:
        study.enqueue_trial(params)
        trial = study.ask()
        try:
            specs.append(search_space.propose(trial, space))
        except search_space.Incompatible:  # a default the sampler had to fill in, refused
            continue
        for key, value in params.items():  # at its defaults, where nameable
            if "." in key and not key.startswith(("group.", "use.")):
                assert trial.params[key] == value
    assert len(specs) >= len(singles) - 2
    assert [s for s in specs if "+" in s] == ["scheduler:name=dpm-solver+steps:n=10"]  # the declared pair


def test_the_combination_takes_the_units_that_helped_and_trims_the_lossiest(tmp_path):
    """After the screening: the faster feasible units together (a declared pair over its
    member when as fast and less lossy); when that misses a constraint, the same without
    the lossiest unit."""
    from bench.tune import Tuner

    tuner = Tuner(TuneConfig(model="digits-unet", out_dir=tmp_path,
                             constraints=(Constraint.parse("fid<=floor"),)))
    base = {"quality": {"fid": 3.0}, "quality_noise_floor": {"fid": {"std": 0.25}}}  # bound 3.5
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="c")
    off = {"group.cache": "none", "group.steps": "none", "group.sched": "none", "use.cl": False}

    choices = {"group.cache": ["none", "deepcache"], "group.steps": ["none", "steps"],
               "group.sched": ["none", "scheduler"], "use.cl": [False, True]}

    def ask(params):
        study.enqueue_trial(params)
        trial = study.ask()
        for k in params:
            trial.suggest_categorical(k, choices[k])
        return trial

    def screened(on, speedup, fid, verdict="faster"):
        trial = ask({**off, **on})
        trial.set_user_attr("screening", True)
        trial.set_user_attr("speedup", speedup)
        trial.set_user_attr("verdict", verdict)
        trial.set_user_attr("quality", {"fid": fid})
        trial.set_user_attr("constraints", [fid - 3.5])
        study.tell(trial, 1 / speedup)

    screened({"group.cache": "deepcache"}, 2.2, 3.3)
    screened({"group.steps": "steps"}, 2.4, 3.2)
    screened({"group.sched": "scheduler", "group.steps": "steps"}, 2.35, 3.0)
    screened({"use.cl": True}, 1.05, 3.0)
    screened({"group.sched": "scheduler"}, 0.99, 2.9, verdict="inconclusive")
    params = tuner._combination(study, base)
    assert params == {"group.cache": "deepcache", "group.steps": "steps", "group.sched": "scheduler",
                      "use.cl": True}
    trial = ask(params)
    trial.set_user_attr("combination", True)
    trial.set_user_attr("combination_units", [list(u) for u in tuner._units])
    trial.set_user_attr("constraints", [0.4])  # missed the FID bound
    study.tell(trial, 0.1)
    tuner._trim(study)
    nxt = study.ask()
    assert nxt.user_attrs["combination"]
    assert {k: nxt.suggest_categorical(k, choices[k]) for k in params} == {**params, "group.cache": "none"}
    # deepcache, the lossiest alone, is left out


def test_the_screening_is_cut_at_its_share_of_the_budget():
    """The screening runs in the tuner's process: a deadline interrupts what runs too long."""
    from bench.tune.screening import ScreeningCut, deadline

    started = time.perf_counter()
    with pytest.raises(ScreeningCut), deadline(0.2):
        while True:
            sum(range(1000))
    assert time.perf_counter() - started < 2
    with deadline(5):  # ends in time: nothing raised, the timer is cleared
        pass
    time.sleep(0.01)


def test_a_cut_lost_in_a_finalizer_comes_again():
    """Regression: Python drops an exception raised while a finalizer runs; the alarm that
    fired there was lost and the screening ran on past its share."""
    from bench.tune.screening import ScreeningCut, deadline

    class SlowToFree:
        def __del__(self) -> None:
            time.sleep(0.3)  # the alarm goes off in here, and its exception is dropped

    started = time.perf_counter()
    with pytest.raises(ScreeningCut), deadline(0.1):
        held = SlowToFree()
        del held
        time.sleep(3)  # the repeated alarm ends this
    assert time.perf_counter() - started < 2


def test_a_screening_past_its_share_fails_its_trials_and_the_search_goes_on(tmp_path, digits_unet):
    from bench.tune import Tuner, search_space

    tuner = Tuner(TuneConfig(model="digits-unet", out_dir=tmp_path, budget_s=600, batch_size=1,
                             cheap_quality_images=4, constraints=(Constraint.parse("psnr>=5"),)))
    tuner.baseline = {"timing": {"latencies_s": [0.01] * 6}}
    tuner._batch_s = [1.0]
    lefts = iter([600.0, 0.3])  # room to start; then 0.3 s for the screening itself
    tuner._left = lambda: next(lefts, 0.3)
    tuner._smallest_final_s = lambda: 0.0
    space = search_space.derive(digits_unet, only=["steps", "scheduler"], for_speed=True)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="cut")
    tuner._screen(study, space)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "FAIL" for t in trials)
    assert all("cut after" in t.user_attrs["reason"] for t in trials)
