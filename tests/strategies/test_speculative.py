"""speculative: greedy output is exactly the target's; the draft is smaller; acceptance recorded."""

from __future__ import annotations

import pytest
import torch

from bench.models import digits_ar
from strategies import StrategyError, parse_stack, parse_strategy
from tests.support.tiny_ar import tiny_model


@pytest.fixture(scope="module")
def shipped():
    from bench.models import load_model

    return load_model("digits-ar")


def with_draft(model, draft):
    """``model`` whose default draft is ``draft`` (an instance attribute, this model only)."""
    model.default_draft = lambda: draft
    return model


def test_usable_with_and_without_parameters():
    assert parse_strategy("speculative").spec == "speculative"
    s = parse_strategy("speculative:num_assistant_tokens=3,schedule=heuristic")
    assert (s.config.num_assistant_tokens, s.config.schedule) == (3, "heuristic")
    with pytest.raises(StrategyError, match="out of range"):
        parse_strategy("speculative:num_assistant_tokens=0")
    with pytest.raises(StrategyError, match="not allowed"):
        parse_strategy("speculative:draft=huge")


def test_refuses_a_diffusion_model_with_the_reason(digits_unet):
    reason = parse_strategy("speculative").supports(digits_unet)
    assert reason and "autoregressive" in reason


def test_missing_draft_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(digits_ar, "DRAFT_DIR", tmp_path / "draft")
    model = tiny_model()
    with pytest.raises(StrategyError, match="distill_digits_ar_draft"):
        parse_stack("speculative").apply(model)


def test_greedy_output_is_exactly_the_targets_even_with_a_poor_draft():
    model = tiny_model(seed=0)
    draft = digits_ar.build_lm({"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}, seed=7)
    prompts, _ = model.prompts(4)
    seeds = [0, 1, 2, 3]
    plain = model.generate(prompts, seeds)
    spec = parse_stack("speculative:num_assistant_tokens=4").apply(with_draft(model.clone(), draft.eval()))
    steps: list[int] = []
    assert torch.equal(plain, spec.generate(prompts, seeds, step_callback=steps.append))
    decoding = spec.notes["decoding"]
    assert decoding["tokens"] == 4 * 64
    assert decoding["target_forwards"] == len(steps) <= 4 * 64  # one step per verification
    assert 0.0 <= decoding["acceptance_rate"] <= 1.0
    assert decoding["draft_accepted"] == decoding["tokens"] - decoding["target_forwards"]
    assert decoding["acceptance_rate"] <= decoding["token_acceptance"] <= 1.0
    assert decoding["draft_rejected"] <= decoding["target_forwards"]
    assert spec.call_args["num_assistant_tokens"] == 4
    assert spec.describe()["call_args"]["num_assistant_tokens"] == 4
    assert set(spec.components()) == {"denoiser", "draft"}


def test_sampled_speculative_decoding_follows_the_seeds():
    model = tiny_model()
    draft = digits_ar.build_lm({"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}, seed=7)
    spec = parse_stack("speculative").apply(with_draft(model, draft.eval()))
    prompts, _ = spec.prompts(2)
    a = spec.generate(prompts, [0, 1], do_sample=True)
    assert torch.equal(a, spec.generate(prompts, [0, 1], do_sample=True))
    assert a.shape == (2, 1, 16, 16)


def test_batched_generation_is_turned_off():
    model = tiny_model()
    model.call_args["batched"] = True
    draft = digits_ar.build_lm({"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}, seed=7)
    spec = parse_stack("speculative").apply(with_draft(model, draft.eval()))
    assert spec.call_args["batched"] is False
    assert "turned off" in spec.notes["speculative"]["note"]


def test_shipped_draft_is_smaller_and_reproduces_the_target_exactly(shipped):
    spec = parse_stack("speculative").apply(shipped.clone())
    target, draft = spec.components()["denoiser"], spec.components()["draft"]
    n_target = sum(p.numel() for p in target.parameters())
    n_draft = sum(p.numel() for p in draft.parameters())
    assert n_draft * 3 < n_target
    assert draft.config.num_hidden_layers < target.config.num_hidden_layers
    assert draft.config.vocab_size == target.config.vocab_size
    prompts = ["a handwritten 3", "a handwritten 8"]
    assert torch.equal(shipped.generate(prompts, [0, 1]), spec.generate(prompts, [0, 1]))
    decoding = spec.notes["decoding"]
    assert decoding["tokens_per_target_forward"] > 1.0  # the draft's tokens were accepted
    assert decoding["acceptance_rate"] > 0.3


def test_runner_records_tokens_per_second_and_acceptance(tmp_path):
    from bench.harness import TimingConfig
    from bench.runner import RunConfig, run
    from bench.summary import summary_table

    config = RunConfig(
        model="digits-ar",
        strategies=("baseline", "speculative"),
        batch_size=1,
        quality_images=0,
        timing=TimingConfig(warmup=0, min_iterations=1, min_seconds=0.0, max_iterations=1),
        out_dir=tmp_path,
        use_cache=False,
    )
    records = run(config, show_progress=False)
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error") for r in records]
    base, spec = records
    assert base["stats"]["tokens_per_s"] == pytest.approx(64 * base["stats"]["images_per_s"])
    assert "acceptance_rate" not in base["stats"]
    assert 0.0 < spec["stats"]["acceptance_rate"] <= 1.0
    assert spec["model"]["call_args"]["num_assistant_tokens"] == 5
    table = summary_table(records)
    assert "tok/s" in table and "accept" in table
    from bench.results import load

    frame = load(tmp_path)
    assert frame["acceptance_rate"].notna().sum() == 1


@pytest.mark.parametrize("init", ["1", "none"])
def test_draft_distillation_script_runs_end_to_end(tmp_path, init):
    from bench.training import distill_digits_ar_draft

    target_dir = tmp_path / "target"
    digits_ar.save_lm(digits_ar.build_lm({"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}), target_dir)
    out = tmp_path / "draft"
    code = distill_digits_ar_draft.main([
        "--target", str(target_dir), "--out", str(out), "--samples", "10", "--steps", "3",
        "--init-layers", init, "--layers", "1", "--hidden", "16", "--heads", "2",
        "--intermediate", "32", "--warmup", "1",
    ])
    assert code == 0
    draft = digits_ar.load_lm(out)
    assert draft.config.num_hidden_layers == 1
    assert draft.config.hidden_size == (32 if init == "1" else 16)
    assert "heldout_top1_agreement" in (out / "training_info.json").read_text()


def test_the_distill_strategys_student_can_be_the_draft():
    model = tiny_model()
    prompts, _ = model.prompts(2)
    spec = parse_stack("speculative:draft=distill,student_drop=alternate,student_steps=2").apply(
        model.clone()
    )
    draft = spec.components()["draft"]
    assert draft.config.num_hidden_layers == 1 < model.lm.config.num_hidden_layers
    assert torch.equal(model.generate(prompts, [0, 1]), spec.generate(prompts, [0, 1]))
    assert spec.notes["speculative"]["student_removed"] == ["decoder layers [1] of 2"]
    assert spec.notes["cold"]["training_s"] > 0
    assert parse_strategy("speculative:draft=distill,student_drop=mid").supports(model)
