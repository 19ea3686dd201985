"""The DiT adapter: PixArt called as the pipeline calls it; block-dropped students copied from
the teacher; distill, fusion and structural pruning on digits-dit, each leaving the teacher
untouched and keeping the transformer's class (its CacheMixin) and config."""

from __future__ import annotations

import pytest
import torch
from diffusers import PixArtTransformer2DModel
from diffusers.models.attention_processor import Attention
from diffusers.models.cache_utils import CacheMixin

from strategies import StrategyError, parse_stack, parse_strategy
from strategies.adapters import get_adapter
from strategies.distill import distill_loss

#: A tiny training run: enough to exercise every piece, in seconds.
TINY = "steps=2,batch_size=4"


@pytest.fixture(scope="module")
def digits_dit():
    """The embedded digits-dit model (do not change it: clone() first)."""
    from bench.models import load_model

    return load_model("digits-dit")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    now = module.state_dict()
    assert set(now) == set(state)
    for key, value in state.items():
        assert torch.equal(now[key], value), key


def _images(model, steps: int = 3) -> torch.Tensor:
    prompts, _ = model.prompts(2)
    return model.generate(prompts, [0, 1], num_inference_steps=steps)


def test_forward_is_the_pipelines_call(digits_dit) -> None:
    adapter = get_adapter(digits_dit)
    images, prompts = next(iter(digits_dit.train_batches(3, 0)))
    batch = adapter.make_batch(images, prompts, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = adapter.forward(digits_dit.denoiser, batch)
        # The pipeline's own call of its transformer (an independent route to the same output).
        inputs = batch.inputs
        expected = digits_dit.pipe.predict(
            inputs["hidden_states"], inputs["timestep"], inputs["encoder_hidden_states"], torch.float32
        )
    assert out.shape == batch.target.shape == (3, 1, 16, 16)
    torch.testing.assert_close(out, expected)
    loss = adapter.task_loss(out, batch)
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize(("drop", "removed"), [("alternate", [1, 3]), ("middle", [1, 2])])
def test_student_drops_blocks_and_copies_the_rest(digits_dit, drop: str, removed: list[int]) -> None:
    adapter = get_adapter(digits_dit)
    teacher = adapter.module()
    info = adapter.build_student(teacher, adapter.parse_drop(drop))
    student = info.module
    assert type(student) is type(teacher) and isinstance(student, CacheMixin)
    kept = [i for i in range(len(teacher.transformer_blocks)) if i not in removed]
    assert len(student.transformer_blocks) == len(kept) == student.config.num_layers
    t_config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
    s_config = {k: v for k, v in student.config.items() if not k.startswith("_")}
    assert s_config == {**t_config, "num_layers": len(kept)}
    n_params = sum(p.numel() for p in student.parameters())
    assert info.initialised == n_params
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if key.startswith("transformer_blocks."):
            parts = key.split(".")
            parts[1] = str(kept[int(parts[1])])
            key = ".".join(parts)
        assert torch.equal(value, t_state[key]), key
    # The feature pairs line up in shape (the loss raises otherwise) and the loss is finite.
    step_loss, remove = distill_loss(adapter, teacher, student, info.feature_pairs, 1.0, 1.0)
    try:
        images, prompts = next(iter(digits_dit.train_batches(2, 0)))
        loss, terms = step_loss(adapter.make_batch(images, prompts, torch.Generator().manual_seed(0)))
    finally:
        remove()
    assert torch.isfinite(loss) and set(terms) == {"task", "kd_out", "kd_feat"}
    assert info.feature_pairs[-1] == (f"transformer_blocks.{len(kept) - 1}", "transformer_blocks.3")


def test_unknown_drop_is_refused(digits_dit) -> None:
    adapter = get_adapter(digits_dit)
    with pytest.raises(StrategyError, match="alternate"):
        adapter.parse_drop("mid")
    reason = parse_strategy("distill:drop=inner").supports(digits_dit)
    assert reason and "alternate" in reason and "middle" in reason


def test_distill_on_the_dit(digits_dit) -> None:
    before = _state(digits_dit.denoiser)
    model = parse_stack(f"distill:{TINY}").apply(digits_dit.clone())
    notes = model.notes["distill"]
    assert notes["params_student"] < 0.7 * notes["params_teacher"]
    assert notes["macs_student"] < 0.6 * notes["macs_teacher"]
    assert notes["training"]["steps"] == 2 and model.notes["cold"]["training_s"] > 0
    student = model.denoiser
    assert isinstance(student, PixArtTransformer2DModel) and isinstance(student, CacheMixin)
    assert model.pipe.transformer is student
    out = _images(model)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    _assert_same_state(digits_dit.denoiser, before)
    # The mixin still works: diffusers' cache hooks apply to the distilled student.
    cached = parse_stack(f"distill:{TINY}+fbcache:threshold=0.05").apply(digits_dit.clone())
    assert cached.notes["distill"]["training"]["cache_hit"] is True
    assert cached.denoiser.is_cache_enabled
    assert _images(cached).shape == (2, 1, 16, 16)


def test_fusion_on_the_dit(digits_dit) -> None:
    before = _state(digits_dit.denoiser)
    teacher_images = _images(digits_dit)
    fused = parse_stack(f"fusion:{TINY},weight=0").apply(digits_dit.clone())
    assert torch.equal(_images(fused), teacher_images)
    assert fused.denoiser.calls["student"] == 0 and fused.denoiser.calls["teacher"] == 3
    split = parse_stack(f"fusion:{TINY},split=0.5").apply(digits_dit.clone())
    out = _images(split, steps=4)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    assert split.denoiser.calls == {"student": 2, "teacher": 2}
    assert split.denoiser.config == digits_dit.denoiser.config
    _assert_same_state(digits_dit.denoiser, before)


def _flop_count(model) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    adapter = get_adapter(model)
    module = adapter.module()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(**adapter.example_inputs(module, batch_size=1))
    return float(counter.get_total_flops())


@pytest.mark.parametrize("attention", ["heads", "ignore"])
def test_structured_pruning_of_the_dit(digits_dit, attention: str) -> None:
    before = _state(digits_dit.denoiser)
    model = parse_stack(f"prune-structured:steps=0,attention={attention}").apply(digits_dit.clone())
    notes = model.notes["prune-structured"]
    pruned = model.denoiser
    assert isinstance(pruned, CacheMixin) and pruned.config == digits_dit.denoiser.config
    assert notes["params_after"] == sum(p.numel() for p in pruned.parameters())
    assert notes["params_after"] < 0.85 * notes["params_before"]
    # PyTorch's FLOP counter (an independent count) sees the same reduction.
    assert _flop_count(model) / _flop_count(digits_dit) == pytest.approx(notes["macs_ratio"], abs=0.02)
    width = digits_dit.denoiser.config.num_attention_heads * digits_dit.denoiser.config.attention_head_dim
    for layer in pruned.modules():
        if isinstance(layer, Attention):
            q, k, v = layer.to_q.out_features, layer.to_k.out_features, layer.to_v.out_features
            assert q == k == v == layer.to_out[0].in_features and q % layer.heads == 0
            assert layer.to_out[0].out_features == width  # the residual width stays
            assert q == (width if attention == "ignore" else width // 2)
    for block in pruned.transformer_blocks:
        assert block.ff.net[0].proj.out_features == block.ff.net[2].in_features < 4 * width
        assert block.scale_shift_table.shape == (6, width)
    assert pruned.scale_shift_table.shape == (2, width)
    assert pruned.proj_out.out_features == digits_dit.denoiser.proj_out.out_features
    out = _images(model)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    _assert_same_state(digits_dit.denoiser, before)


def test_structured_pruning_recovery_on_the_dit(digits_dit) -> None:
    spec = "prune-structured:steps=2,batch_size=4,ratio=0.25,augment=none,importance=taylor"
    first = parse_stack(spec).apply(digits_dit.clone())
    assert first.notes["prune-structured"]["recovery"]["cache_hit"] is False
    second = parse_stack(spec).apply(digits_dit.clone())
    assert second.notes["prune-structured"]["recovery"]["cache_hit"] is True
    _assert_same_state(second.denoiser, _state(first.denoiser))
    assert _images(second).shape == (2, 1, 16, 16)
