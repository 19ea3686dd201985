"""``cache-dit:dbcache``: cache-dit's DBCache through accelbench - it reuses steps on the
trained digits-dit, resets between generations, refuses in words where it cannot apply, and a
missing package is an ``unsupported`` reason rather than an import error."""

from __future__ import annotations

import sys

import pytest
import torch

from bench.models.registry import load_model
from strategies import parse_stack, parse_strategy


@pytest.fixture(scope="module")
def dit():
    return load_model("digits-dit")


def test_dbcache_reuses_steps_on_the_trained_dit_and_resets_between_generations(dit):
    prompts, seeds = dit.prompts(2)
    baseline = dit.generate(prompts, seeds)
    strategy = parse_strategy("cache-dit:dbcache,warmup=2,threshold=0.2")
    model = parse_stack(strategy.spec).apply(dit.clone())
    first = model.generate(prompts, seeds)
    assert strategy.cached_steps(model)  # some steps reused the middle blocks' residual
    assert torch.equal(model.generate(prompts, seeds), first)
    assert not torch.equal(first, baseline)
    assert (first - baseline).abs().mean() < 0.1
    assert torch.equal(dit.generate(prompts, seeds), baseline)  # the loaded model is untouched


def test_threshold_zero_reuses_nothing(dit):
    prompts, seeds = dit.prompts(2)
    strategy = parse_strategy("cache-dit:dbcache,threshold=0,warmup=0")
    model = parse_stack(strategy.spec).apply(dit.clone())
    assert torch.allclose(model.generate(prompts, seeds), dit.generate(prompts, seeds), atol=1e-5)
    assert strategy.cached_steps(model) == []


def test_where_it_cannot_apply_it_says_why(dit):
    unet = load_model("digits-unet")
    assert "no list of transformer blocks" in parse_strategy("cache-dit").supports(unet)
    assert "leave none" in parse_strategy("cache-dit:dbcache,front=8").supports(dit)


def test_a_missing_package_is_a_reason_not_an_import_error(dit, monkeypatch):
    monkeypatch.setitem(sys.modules, "cache_dit", None)
    reason = parse_strategy("cache-dit").supports(dit)
    assert "cache-dit is not installed" in reason and "accelbench[cache-dit]" in reason
