"""speculative: greedy output is exactly the target's at batch size > 1, sampled output keeps the
target's distribution, every image advances on its own, the draft is smaller, counts kept."""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch

from bench.models.digits import ar as digits_ar
from strategies import StrategyError, parse_stack, parse_strategy
from strategies.speculative import SpeculativeDecoder
from tests.support.decoding_stats import exact_marginals, sampled_session, total_variation
from tests.support.tiny_ar import tiny_draft, tiny_model, tiny_session


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


def test_missing_draft_is_a_clear_error(tmp_path):
    model = tiny_model()
    model.draft_dir = tmp_path / "draft"
    with pytest.raises(StrategyError, match="distill_digits_ar_draft"):
        parse_stack("speculative").apply(model)


@pytest.mark.parametrize("spec", ["speculative:num_assistant_tokens=4",
                                  "speculative:num_assistant_tokens=2,schedule=heuristic",
                                  "speculative:confidence=0.2"])
def test_greedy_output_is_exactly_the_targets_at_batch_size_above_one(spec):
    model = tiny_model(seed=0)
    prompts, _ = model.prompts(4)
    seeds = [0, 1, 2, 3]
    plain = model.generate(prompts, seeds, do_sample=False)
    fast = parse_stack(spec).apply(with_draft(model.clone(), tiny_draft()))
    steps: list[int] = []
    assert torch.equal(plain, fast.generate(prompts, seeds, do_sample=False,
                                            step_callback=steps.append))
    decoding = fast.notes["decoding"]
    assert decoding["decoder"] == "speculative"
    assert decoding["tokens"] == 4 * 64 and decoding["images"] == 4
    assert decoding["forward_passes"] == len(steps) <= 64  # one step per verification pass
    assert decoding["draft_forward_passes"] >= decoding["forward_passes"]
    assert 0.0 <= decoding["acceptance_rate"] <= decoding["token_acceptance"] <= 1.0
    assert decoding["draft_accepted"] <= decoding["draft_checked"] <= decoding["draft_proposed"]
    assert set(fast.components()) == {"denoiser", "draft"}


def test_a_perfect_draft_is_always_accepted():
    model = tiny_model()
    fast = parse_stack("speculative:num_assistant_tokens=4").apply(with_draft(model.clone(), model.lm))
    prompts, _ = model.prompts(3)
    assert torch.equal(model.generate(prompts, [0, 1, 2], do_sample=False),
                       fast.generate(prompts, [0, 1, 2], do_sample=False))
    decoding = fast.notes["decoding"]
    assert decoding["acceptance_rate"] == 1.0
    # 1 prefill + rounds of 5 tokens (4 drafts and the target's own): 63 tokens in 13 rounds.
    assert decoding["forward_passes_per_image"] == 14


def test_images_advance_by_their_own_accepted_lengths():
    """A batch whose images accept different numbers of drafts still decodes each exactly."""
    plain = tiny_session(grid=(4, 4), batch=5)
    from bench.models.ar_decoding import decode_autoregressive

    decode_autoregressive(plain)
    fast = tiny_session(grid=(4, 4), batch=5, draft=True)
    SpeculativeDecoder(k=3)(fast)
    assert torch.equal(plain.out, fast.out)
    assert fast.stats.image_forward_passes < 5 * 16 or fast.stats.draft_accepted == 0


def test_sampled_tokens_follow_the_targets_distribution():
    session, lm = sampled_session(8000, temperature=0.3, draft=True)
    SpeculativeDecoder(k=2)(session)
    assert 0 < session.stats.draft_accepted < session.stats.draft_proposed
    distances = total_variation(session.out, exact_marginals(lm, 0.3))
    # Sampling noise at 8000 images is about 0.02; keeping every draft token gives ~0.05.
    assert max(distances) < 0.04, distances


def test_sampled_images_follow_their_own_seeds():
    model = parse_stack("speculative").apply(with_draft(tiny_model(), tiny_draft()))
    prompts, _ = model.prompts(3)
    a = model.generate(prompts, [0, 1, 2])
    assert torch.equal(a, model.generate(prompts, [0, 1, 2]))
    assert torch.equal(a[1:], model.generate(prompts[1:], [1, 2]))


def test_strategies_reach_the_model_only_through_the_protocol():
    """No strategy imports a model module's internals (only the protocol and the decoding
    loop's public API)."""
    root = pathlib.Path(__file__).parents[2] / "strategies"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module not in ("bench.models.digits.ar", "bench.models.arch.janus",
                                           "bench.models.arch.emu3"), path
                if node.module == "bench.models":
                    names = {a.name for a in node.names}
                    assert not names & {"digits_ar", "digits_unet", "digits_dit"}, path


def test_shipped_draft_is_smaller_and_reproduces_the_target_exactly(shipped):
    spec = parse_stack("speculative").apply(shipped.clone())
    target, draft = spec.components()["denoiser"], spec.components()["draft"]
    n_target = sum(p.numel() for p in target.parameters())
    n_draft = sum(p.numel() for p in draft.parameters())
    assert n_draft * 3 < n_target
    assert draft.config.num_hidden_layers < target.config.num_hidden_layers
    assert draft.config.vocab_size == target.config.vocab_size
    prompts = ["a handwritten 3", "a handwritten 8", "a handwritten 0"]
    assert torch.equal(shipped.generate(prompts, [0, 1, 2], do_sample=False),
                       spec.generate(prompts, [0, 1, 2], do_sample=False))
    decoding = spec.notes["decoding"]
    assert decoding["tokens_per_forward"] > 1.5  # the draft's tokens were accepted
    assert decoding["acceptance_rate"] > 0.3
    assert "slower" in spec.notes["speculative"]["note"]


def test_engine_records_tokens_per_second_and_acceptance(tmp_path):
    from bench.core import results
    from bench.core.config import RunConfig, TimingConfig
    from bench.measure.engine import Engine

    config = RunConfig(
        model="digits-ar", strategies=("baseline", "speculative"), batch_size=2,
        quality_images=0, out_dir=tmp_path, threads=1, use_cache=False,
        timing=TimingConfig(warmup=0, min_iterations=1, min_seconds=0.0, max_iterations=1),
    )
    Engine(config, show_progress=False).run()
    records = list(results.iter_records(tmp_path))
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error") for r in records]
    base, spec = records
    assert base["stats"]["tokens_per_s"] == pytest.approx(64 * base["stats"]["images_per_s"])
    assert "acceptance_rate" not in base["stats"]
    assert 0.0 < spec["stats"]["acceptance_rate"] <= 1.0
    assert spec["decoding"]["decoder"] == "speculative"
    assert spec["model"]["decoder"]["num_assistant_tokens"] == 2


@pytest.mark.parametrize("init", ["1", "none"])
def test_draft_distillation_script_runs_end_to_end(tmp_path, init):
    from bench.models.digits.training import distill_digits_ar_draft

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
    info = (out / "training_info.json").read_text()
    assert "heldout_top1_agreement" in info and '"identical_to_target": true' in info


def test_the_distill_strategys_student_can_be_the_draft():
    model = tiny_model()
    prompts, _ = model.prompts(2)
    spec = parse_stack("speculative:draft=distill,student_drop=alternate,student_steps=2").apply(
        model.clone()
    )
    draft = spec.components()["draft"]
    assert draft.config.num_hidden_layers == 1 < model.lm.config.num_hidden_layers
    assert torch.equal(model.generate(prompts, [0, 1], do_sample=False),
                       spec.generate(prompts, [0, 1], do_sample=False))
    assert spec.notes["speculative"]["student_removed"] == ["decoder layers [1] of 2"]
    assert spec.notes["cold"]["training_s"] > 0
    assert parse_strategy("speculative:draft=distill,student_drop=mid").supports(model)
