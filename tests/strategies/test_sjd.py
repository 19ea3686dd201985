"""sjd: greedy output identical to plain decoding, sampled output following the model's own
distribution, acceptance recorded per Jacobi iteration, and the strategy's contract."""

from __future__ import annotations

import pytest
import torch

from bench.models.ar_decoding import decode_autoregressive
from strategies import StrategyError, parse_stack, parse_strategy
from strategies.sjd import SJDDecoder
from tests.support.decoding_stats import exact_marginals, sampled_session, total_variation
from tests.support.tiny_ar import tiny_model, tiny_session


@pytest.mark.parametrize("block", [1, 3, 6])
def test_greedy_output_is_the_baselines_at_batch_size_above_one(block):
    model = tiny_model()
    prompts, _ = model.prompts(5)
    seeds = list(range(5))
    plain = model.generate(prompts, seeds, do_sample=False)
    jacobi = parse_stack(f"sjd:block={block}").apply(model.clone())
    assert torch.equal(plain, jacobi.generate(prompts, seeds, do_sample=False))
    decoding = jacobi.notes["decoding"]
    assert decoding["decoder"] == "sjd"
    assert decoding["tokens"] == 5 * 64 and decoding["images"] == 5
    assert decoding["forward_passes_per_image"] <= 64
    assert decoding["tokens_per_forward"] == pytest.approx(64 / decoding["forward_passes_per_image"])


def test_greedy_on_a_small_grid_matches_plain_decoding_token_for_token():
    plain = tiny_session(grid=(2, 5), batch=3)
    decode_autoregressive(plain)
    jacobi = tiny_session(grid=(2, 5), batch=3)
    SJDDecoder(block=4)(jacobi)
    assert torch.equal(plain.out, jacobi.out)


def test_sampled_tokens_follow_the_models_distribution():
    session, lm = sampled_session(8000, temperature=0.3)
    SJDDecoder(block=2)(session)
    assert session.stats.draft_accepted > 0  # guesses were kept, so the rule was exercised
    distances = total_variation(session.out, exact_marginals(lm, 0.3))
    # Sampling noise at 8000 images is about 0.02; always keeping the guesses gives > 0.1.
    assert max(distances) < 0.04, distances


def test_acceptance_is_recorded_per_iteration():
    model = parse_stack("sjd:block=3").apply(tiny_model())
    prompts, _ = model.prompts(2)
    model.generate(prompts, [0, 1])
    decoding = model.notes["decoding"]
    per_iteration = decoding["acceptance_per_iteration"]
    assert 1 <= len(per_iteration) <= 16
    assert all(a is None or 0.0 <= a <= 1.0 for a in per_iteration)
    assert sum(decoding["proposed_per_iteration"]) == decoding["draft_proposed"]
    assert sum(decoding["accepted_per_iteration"]) == decoding["draft_accepted"]
    assert decoding["acceptance_rate"] == pytest.approx(
        decoding["draft_accepted"] / decoding["draft_proposed"])
    assert "draft_forward_passes" not in decoding  # no draft network


def test_sampled_images_follow_their_own_seeds():
    model = parse_stack("sjd").apply(tiny_model())
    prompts, _ = model.prompts(3)
    a = model.generate(prompts, [0, 1, 2])
    assert torch.equal(a[1:], model.generate(prompts[1:], [1, 2]))


def test_parameters_and_refusals(digits_unet):
    assert parse_strategy("sjd").spec == "sjd:block=2"
    with pytest.raises(StrategyError, match="out of range"):
        parse_strategy("sjd:block=0")
    assert "autoregressive" in parse_strategy("sjd").supports(digits_unet)
    with pytest.raises(StrategyError):
        parse_stack("sjd+no-kv-cache")
    with pytest.raises(StrategyError):
        parse_stack("sjd+speculative")
