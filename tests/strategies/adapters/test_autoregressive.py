"""The autoregressive adapter: tokens back from images, students, pruning equal to zeroing."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.models.digits import ar as digits_ar
from strategies import parse_stack
from strategies.adapters.base import get_adapter
from tests.support.tiny_ar import tiny_model


def test_images_back_to_token_sequences_is_exact_on_real_digits():
    from bench.models.digits.data import load_split, prompt_for

    model = tiny_model()
    images8, labels = digits_ar.raw_split("heldout")
    real = torch.from_numpy(load_split("heldout").images.copy())
    prompts = [prompt_for(int(d)) for d in labels]
    seqs = model.token_sequences(real, prompts)
    assert torch.equal(seqs[:, 1:], digits_ar.images_to_tokens(images8))
    assert torch.equal(seqs[:, 0], torch.as_tensor(labels) + digits_ar.PROMPT_TOKEN_OFFSET)
    noisy = (real + 0.1 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    tokens = model.token_sequences(noisy, prompts)[:, 1:]
    assert tokens.min() >= 0 and tokens.max() <= 16


def test_the_adapter_uses_the_token_protocol_only():
    import inspect

    from strategies.adapters import autoregressive

    assert "digits_ar" not in inspect.getsource(autoregressive)
    adapter = get_adapter(tiny_model())
    inputs = adapter.example_inputs(tiny_model().lm, batch_size=3)
    assert inputs["input_ids"].shape == (3, 64)


def test_batches_and_task_loss():
    model = tiny_model()
    adapter = get_adapter(model)
    images, prompts = next(model.train_batches(4, 0))
    batch = adapter.make_batch(images, prompts, torch.Generator().manual_seed(0))
    assert batch.inputs["input_ids"].shape == (4, 64) and batch.target.shape == (4, 64)
    out = adapter.forward(model.lm, batch)
    assert out.shape == (4, 64, digits_ar.VOCAB_SIZE)
    assert torch.allclose(out.mean(-1), torch.zeros(4, 64), atol=1e-5)  # centred logits
    logits = model.lm(**batch.inputs).logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.target.reshape(-1))
    assert torch.allclose(adapter.task_loss(out, batch), expected, atol=1e-5)


def test_student_keeps_every_other_layer_copied_from_the_teacher():
    model = tiny_model()
    adapter = get_adapter(model)
    teacher = model.lm
    student = adapter.build_student(teacher, adapter.parse_drop(None))
    assert student.module.config.num_hidden_layers == 1
    assert sum(p.numel() for p in student.module.parameters()) < sum(p.numel() for p in teacher.parameters())
    assert student.initialised == sum(p.numel() for p in student.module.parameters())
    assert torch.equal(student.module.model.layers[0].mlp.up_proj.weight, teacher.model.layers[0].mlp.up_proj.weight)
    assert student.feature_pairs == [("model.layers.0", "model.layers.1"), ("model.norm", "model.norm")]
    both = adapter.build_student(teacher, adapter.parse_drop("alternate/upper"))
    assert both.module.config.num_hidden_layers == 1
    with pytest.raises(Exception, match="cannot drop"):
        adapter.parse_drop("mid")


def _zeroed_reference(original, pruned):
    """``original`` with the channels ``pruned`` removed set to zero (an independent reference)."""
    ref = copy.deepcopy(original)

    def kept_rows(new, old):
        return [int((old == row).all(dim=1).nonzero()[0]) for row in new]

    with torch.no_grad():
        for lo, lp in zip(ref.model.layers, pruned.model.layers, strict=True):
            a, ap = lo.self_attn, lp.self_attn
            for name in ("q_proj", "k_proj", "v_proj"):
                proj = getattr(a, name)
                mask = torch.zeros(proj.out_features, dtype=torch.bool)
                mask[kept_rows(getattr(ap, name).weight, proj.weight)] = True
                proj.weight[~mask] = 0
                if name == "v_proj":
                    a.o_proj.weight[:, ~mask] = 0
            mlp = lo.mlp
            mask = torch.zeros(mlp.gate_proj.out_features, dtype=torch.bool)
            mask[kept_rows(lp.mlp.gate_proj.weight, mlp.gate_proj.weight)] = True
            mlp.gate_proj.weight[~mask] = 0
            mlp.up_proj.weight[~mask] = 0
            mlp.down_proj.weight[:, ~mask] = 0
    return ref


def test_pruning_heads_and_mlp_equals_zeroing_those_channels():
    from strategies.prune_structured import Config, prune_module

    model = tiny_model()
    adapter = get_adapter(model)
    original = model.lm
    pruned = copy.deepcopy(original)
    prune_module(model, adapter, pruned, Config(ratio=0.5, steps=0))
    widths = adapter.channel_widths(pruned)
    assert widths["mlp0"] == 32 and widths["head_dim0"] == 8  # from 64 and 16
    attn = pruned.model.layers[0].self_attn
    kept = attn.rope_index.tolist()
    assert kept[4:] == [k + 8 for k in kept[:4]]  # rotary pairs kept together
    inputs = adapter.example_inputs(original, batch_size=3)
    with torch.no_grad():
        expected = _zeroed_reference(original, pruned)(**inputs).logits
        got = pruned(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, original(**inputs).logits, atol=1e-3)


def test_pruning_with_attention_ignored_leaves_attention_whole():
    from strategies.prune_structured import Config, prune_module

    model = tiny_model()
    adapter = get_adapter(model)
    pruned = copy.deepcopy(model.lm)
    prune_module(model, adapter, pruned, Config(ratio=0.5, steps=0, attention="ignore"))
    widths = adapter.channel_widths(pruned)
    assert widths["mlp1"] == 32 and widths["head_dim1"] == 16


def test_shared_strategies_run_on_the_autoregressive_model():
    model = tiny_model()
    prompts, _ = model.prompts(2)
    for spec in ("prune-structured:steps=2,batch_size=4", "distill:steps=2,batch_size=4"):
        changed = parse_stack(spec).apply(model.clone())
        images = changed.generate(prompts, [0, 1])
        assert images.shape == (2, 1, 16, 16)
        name = spec.split(":")[0]
        assert changed.parameter_count() < model.parameter_count(), name
        assert changed.notes["cold"]["training_s"] > 0
    quantized = parse_stack("quant").apply(model.clone())
    notes = quantized.notes["quant"]
    assert notes["quantized_linear_layers"] == 2 * 7 + 1  # q, k, v, o, gate, up, down + lm_head
    assert quantized.generate(prompts, [0, 1]).shape == (2, 1, 16, 16)
