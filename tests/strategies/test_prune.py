"""Pruning: magnitude pruning zeroes exactly the requested share of the smallest weights,
permanently; structural pruning leaves a smaller model (MACs and params, cross-checked with
PyTorch's own FLOP counter) that keeps GroupNorm groups and attention heads whole and still
generates; its recovery fine-tune is cached."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from strategies import StrategyError, parse_stack, parse_strategy
from strategies.adapters import get_adapter
from strategies.prune_magnitude import prunable_layers


# -- unstructured magnitude pruning -------------------------------------------------------------
def test_layer_scope_zeroes_the_smallest_weights(digits_unet) -> None:
    amount = 0.3
    original = {n: m.weight.detach().clone() for n, m in prunable_layers(digits_unet.denoiser)}
    model = parse_stack(f"prune-magnitude:amount={amount}").apply(digits_unet.clone())
    layers = dict(prunable_layers(model.denoiser))
    assert set(layers) == set(original)
    for name, layer in layers.items():
        w0, w = original[name], layer.weight.detach()
        # torch.nn.utils.prune prunes round(amount * n) weights of each tensor.
        expected = round(amount * w0.numel())
        # Original zeros are the smallest weights, so they are among the pruned ones.
        assert int((w == 0).sum()) == max(expected, int((w0 == 0).sum())), name
        # Independent reference: NumPy's sort gives the magnitude threshold; every zeroed
        # weight is at or below it, every kept one at or above it.
        if expected:
            threshold = float(np.sort(np.abs(w0.numpy().ravel()))[expected - 1])
            assert (w0[w == 0].abs() <= threshold).all(), name
            assert (w0[w != 0].abs() >= threshold).all(), name
        assert torch.equal(w[w != 0], w0[w != 0]), name
        # Permanent: no reparametrisation or mask left behind.
        assert not hasattr(layer, "weight_orig") and not hasattr(layer, "weight_mask")
        assert not layer._forward_pre_hooks
    assert model.notes["prune-magnitude"]["sparsity_after"] == pytest.approx(amount, abs=1e-3)


def test_global_scope_reaches_the_requested_sparsity(digits_unet) -> None:
    model = parse_stack("prune-magnitude:amount=0.6,scope=global").apply(digits_unet.clone())
    weights = torch.cat([m.weight.detach().flatten() for _, m in prunable_layers(model.denoiser)])
    assert float((weights == 0).float().mean()) == pytest.approx(0.6, abs=1e-4)
    notes = model.notes["prune-magnitude"]
    assert notes["sparsity_after"] == pytest.approx(0.6, abs=1e-4)
    assert "no speedup" in notes["note"]


def test_magnitude_pruned_model_generates(digits_unet) -> None:
    prompts, _ = digits_unet.prompts(2)
    model = parse_stack("prune-magnitude:amount=0.2").apply(digits_unet.clone())
    out = model.generate(prompts, [0, 1], num_inference_steps=2)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()


def test_amount_is_range_checked() -> None:
    with pytest.raises(StrategyError, match="out of range"):
        parse_strategy("prune-magnitude:amount=1.5")


# -- structural pruning -----------------------------------------------------------------------
def _flop_count(model) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    adapter = get_adapter(model)
    module = adapter.module()
    inputs = adapter.example_inputs(module, batch_size=1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(**inputs)
    return float(counter.get_total_flops())


@pytest.mark.parametrize("attention", ["heads", "ignore"])
def test_structured_pruning_shrinks_and_generates(digits_unet, attention: str) -> None:
    from diffusers.models.attention_processor import Attention

    model = parse_stack(f"prune-structured:steps=0,attention={attention}").apply(
        digits_unet.clone()
    )
    notes = model.notes["prune-structured"]
    assert notes["params_after"] < 0.4 * notes["params_before"]
    assert notes["macs_after"] < 0.4 * notes["macs_before"]
    assert notes["params_after"] == sum(p.numel() for p in model.denoiser.parameters())
    # PyTorch's FLOP counter (an independent count) sees the same reduction.
    ratio = _flop_count(model) / _flop_count(digits_unet)
    assert ratio == pytest.approx(notes["macs_ratio"], abs=0.02)

    unet = model.denoiser
    for layer in unet.modules():
        if isinstance(layer, nn.GroupNorm):
            assert layer.num_channels % layer.num_groups == 0
            assert layer.weight.numel() == layer.num_channels
        if isinstance(layer, Attention):
            q, k, v = layer.to_q.out_features, layer.to_k.out_features, layer.to_v.out_features
            assert q == k == v == layer.to_out[0].in_features
            assert q % layer.heads == 0
            if attention == "ignore":
                assert q == 64
    assert unet.conv_out.out_channels == 1
    prompts, _ = digits_unet.prompts(2)
    out = model.generate(prompts, [0, 1], num_inference_steps=2)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()


def test_structured_pruning_with_recovery_is_cached(digits_unet) -> None:
    spec = "prune-structured:steps=2,batch_size=4,ratio=0.25,augment=none"
    first = parse_stack(spec).apply(digits_unet.clone())
    rec = first.notes["prune-structured"]["recovery"]
    assert rec["steps"] == 2 and rec["cache_hit"] is False
    assert first.notes["cold"]["training_s"] > 0
    second = parse_stack(spec).apply(digits_unet.clone())
    assert second.notes["prune-structured"]["recovery"]["cache_hit"] is True
    assert second.notes["cold"]["training_s"] == pytest.approx(first.notes["cold"]["training_s"])
    for (name, a), (_, b) in zip(first.denoiser.state_dict().items(),
                                 second.denoiser.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # The recovered weights differ from the plain pruned ones (training happened).
    plain = parse_stack("prune-structured:steps=0,ratio=0.25").apply(digits_unet.clone())
    assert any(not torch.equal(a, b) for a, b in zip(plain.denoiser.state_dict().values(),
                                                      first.denoiser.state_dict().values(),
                                                      strict=True))
    assert math.isfinite(rec["final_loss"]["loss"])


def test_structured_refuses_a_model_without_adapter(digits_unet) -> None:
    model = digits_unet.clone()
    model.kind = "video-diffusion"
    reason = parse_strategy("prune-structured").supports(model)
    assert reason and "no strategy adapter" in reason and "video-diffusion" in reason
