"""Distillation and fusion: the student is smaller and starts as the teacher's blocks; training
is cached under the teacher's fingerprint; fusion at weight (or split) 0 and 1 reproduces the
teacher and the student bit for bit, and a split runs each model for its share of the steps."""

from __future__ import annotations

import re

import pytest
import torch

from strategies import StrategyError, parse_stack, parse_strategy
from strategies.adapters import get_adapter
from strategies.core.training import cache_path
from strategies.distill import Config as DistillConfig
from strategies.distill import distill_loss
from strategies.fusion import FusedDenoiser

#: A tiny training run: enough to exercise every piece, in seconds.
TINY = "steps=2,batch_size=4"
STEPS = 3


def _images(model, n: int = 2) -> torch.Tensor:
    prompts, _ = model.prompts(n)
    return model.generate(prompts, list(range(n)), num_inference_steps=STEPS)


def test_student_is_smaller_and_initialised_from_teacher(digits_unet) -> None:
    adapter = get_adapter(digits_unet)
    teacher = adapter.module()
    student = adapter.build_student(teacher, adapter.parse_drop("mid/inner"))
    s_params = sum(p.numel() for p in student.module.parameters())
    assert s_params < 0.6 * sum(p.numel() for p in teacher.parameters())
    assert student.module.mid_block is None
    assert len(student.module.down_blocks) == len(teacher.down_blocks) - 1
    assert student.initialised == s_params
    t_state = teacher.state_dict()
    for key, value in student.module.state_dict().items():
        # Without the inner level, student up block j is the teacher's up block j + 1.
        source = re.sub(r"^up_blocks\.(\d+)\.", lambda m: f"up_blocks.{int(m[1]) + 1}.", key)
        assert torch.equal(value, t_state[source]), key
    macs_s, _ = adapter.count_macs(student.module)
    macs_t, _ = adapter.count_macs(teacher)
    assert macs_s < macs_t


def test_feature_pairs_match_in_shape(digits_unet) -> None:
    adapter = get_adapter(digits_unet)
    teacher = adapter.module()
    for drop in ("mid", "inner", "mid/inner"):
        info = adapter.build_student(teacher, adapter.parse_drop(drop))
        assert info.feature_pairs
        step_loss, remove = distill_loss(adapter, teacher, info.module, info.feature_pairs, 1.0, 1.0)
        try:
            images, prompts = next(iter(digits_unet.train_batches(2, 0)))
            batch = adapter.make_batch(images, prompts, torch.Generator().manual_seed(0))
            loss, terms = step_loss(batch)  # raises if a pair's shapes differ
        finally:
            remove()
        assert torch.isfinite(loss) and set(terms) == {"task", "kd_out", "kd_feat"}


def test_distill_trains_caches_and_generates(digits_unet) -> None:
    spec = f"distill:{TINY},augment=all,seed=7"  # a config no other test trains
    first = parse_stack(spec).apply(digits_unet.clone())
    notes = first.notes["distill"]
    assert notes["params_student"] < notes["params_teacher"]
    assert notes["macs_student"] < notes["macs_teacher"]
    assert notes["training"]["cache_hit"] is False and notes["training"]["steps"] == 2
    assert first.notes["cold"]["training_s"] > 0
    assert cache_path(notes["training"]["cache_key"]).is_file()
    second = parse_stack(spec).apply(digits_unet.clone())
    assert second.notes["distill"]["training"]["cache_hit"] is True
    assert second.notes["cold"]["training_s"] == pytest.approx(first.notes["cold"]["training_s"])
    for a, b in zip(first.denoiser.state_dict().values(), second.denoiser.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    out = _images(second)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()


def test_cache_key_follows_teacher_weights(digits_unet) -> None:
    base = parse_stack(f"distill:{TINY}").apply(digits_unet.clone())
    changed = digits_unet.clone()
    with torch.no_grad():
        changed.denoiser.conv_in.bias.add_(0.01)
    other = parse_stack(f"distill:{TINY}").apply(changed)
    assert other.notes["distill"]["training"]["cache_key"] != base.notes["distill"]["training"]["cache_key"]
    assert other.notes["distill"]["training"]["cache_hit"] is False


@pytest.mark.parametrize(("param", "reference"), [
    ("weight=0", "teacher"), ("weight=1", "student"), ("split=0", "teacher"), ("split=1", "student"),
])
def test_fusion_endpoints_are_exact(digits_unet, param: str, reference: str) -> None:
    fused = parse_stack(f"fusion:{TINY},{param}").apply(digits_unet.clone())
    if reference == "teacher":
        expected = _images(digits_unet)
    else:
        expected = _images(parse_stack(f"distill:{TINY}").apply(digits_unet.clone()))
    assert torch.equal(_images(fused), expected)
    calls = fused.denoiser.calls
    other = "student" if reference == "teacher" else "teacher"
    assert calls[reference] > 0 and calls[other] == 0


def test_fusion_split_runs_student_first(digits_unet) -> None:
    fused = parse_stack(f"fusion:{TINY},split=0.5").apply(digits_unet.clone())
    denoiser = fused.denoiser
    assert isinstance(denoiser, FusedDenoiser)
    order = []
    for name in ("teacher", "student"):
        getattr(denoiser, name).register_forward_pre_hook(
            lambda *_, name=name: order.append(name)
        )
    prompts, _ = fused.prompts(2)
    fused.generate(prompts, [0, 1], num_inference_steps=4)
    assert order == ["student", "student", "teacher", "teacher"]
    assert "13 of 25 steps by the student" in fused.notes["fusion"]["schedule"]
    # A weight in between runs both models every step and blends them.
    blend = parse_stack(f"fusion:{TINY},weight=0.5").apply(digits_unet.clone())
    blend.generate(prompts, [0, 1], num_inference_steps=STEPS)
    assert blend.denoiser.calls == {"teacher": STEPS, "student": STEPS}


def test_fused_blend_is_the_weighted_mean(digits_unet) -> None:
    adapter = get_adapter(digits_unet)
    teacher = adapter.module()
    student = adapter.build_student(teacher, adapter.parse_drop("default")).module.eval()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
    inputs = adapter.example_inputs(teacher, batch_size=2)
    fused = FusedDenoiser(teacher, student, weight=0.3)
    with torch.no_grad():
        t, s, f = teacher(**inputs)[0], student(**inputs)[0], fused(**inputs)[0]
    torch.testing.assert_close(f, 0.7 * t + 0.3 * s)


def test_configs_are_checked(digits_unet) -> None:
    with pytest.raises(StrategyError, match="not both"):
        parse_strategy("fusion:split=0.5,weight=0.5")
    with pytest.raises(StrategyError, match="distill and fusion|already trains"):
        parse_stack("distill+fusion")
    with pytest.raises(StrategyError, match="unknown augmentation"):
        parse_strategy("distill:augment=blur")
    reason = parse_strategy("distill:drop=encoder").supports(digits_unet)
    assert reason and "mid" in reason and "inner" in reason
    other = digits_unet.clone()
    other.kind = "autoregressive"  # a UNet posing as an LLM: the adapter sees through it
    reason = parse_strategy("distill").supports(other)
    assert reason and "UNet2DConditionModel" in reason and "causal LM" in reason
    assert parse_strategy("distill").spec == "distill"
    assert DistillConfig().steps > 0


def test_training_strategies_are_flagged() -> None:
    assert parse_stack("distill").trains and parse_stack("fusion").trains
    assert parse_stack("prune-structured").trains
    assert not parse_stack("quant").trains and not parse_stack("prune-magnitude").trains
