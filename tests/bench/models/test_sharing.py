"""Stacks share the loaded model's weights: every strategy leaves the loaded model and the other
stacks alone, and a stack holds new storage only for what it rewrites."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
import torch
from torch import nn

from bench.models import sharing

#: Models tried in order for each strategy: the first that supports it is used.
CANDIDATES = ("digits-unet", "digits-dit", "digits-ar", "arch:flux@tiny", "arch:sd3@tiny")
#: Cheap configurations of the strategies that train or compile (the sharing is the same).
SPECS = {
    "compile": "compile:backend=eager",
    "distill": "distill:steps=1,batch_size=2",
    "fusion": "fusion:steps=1,batch_size=2",
    "consistency": "consistency:train_steps=1,batch_size=2",
    "prune-structured": "prune-structured:steps=1,batch_size=2",
}
#: Strategies a CPU without the hardware refuses for speed, whose change to the weights still
#: works anywhere: checked by applying them past that refusal.
PAST_REFUSAL = {"fp16"}


@cache
def _loaded(name: str):
    from bench.models import load_model

    return load_model(name)


def _checksum(model) -> str:
    digest = hashlib.sha256()
    for tensor in sharing.tensors_of(sharing.modules_of(model)):
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _generate(model) -> torch.Tensor:
    args = {"num_inference_steps": 2} if "num_inference_steps" in model.call_args else {}
    torch.manual_seed(0)
    with torch.inference_mode():
        return model.generate(["a handwritten 3"] if model.name.startswith("digits") else ["a cat"],
                              [0], **args)


def test_a_shared_copy_has_its_own_modules_over_the_same_storage():
    base = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    twin = sharing.shared_copy(base)
    assert twin is not base and twin[0] is not base[0]
    assert twin[0].weight is not base[0].weight
    assert twin[0].weight.data_ptr() == base[0].weight.data_ptr()
    assert twin[1].running_mean.data_ptr() == base[1].running_mean.data_ptr()
    twin.register_forward_hook(lambda *_: None)
    assert not base._forward_hooks  # hooks stay with the copy
    twin.to(torch.bfloat16)  # rebinding gives the copy storage of its own
    assert base[0].weight.dtype == torch.float32
    # Floats at half the width; the batch counter (one int64) stays shared.
    assert sharing.weight_bytes(twin) == 36 * 2 + 8 and sharing.weight_bytes(base) == 36 * 4 + 8


def test_in_place_writes_to_shared_weights_are_caught():
    base = nn.Linear(4, 4)
    before = sharing.versions(base)
    twin = sharing.shared_copy(base)
    with torch.no_grad():
        twin.weight.mul_(0.5)  # what a strategy must never do
    assert sharing.written_in_place(before) == ["(4, 4) float32"]
    fresh = sharing.versions(base)
    with torch.no_grad():
        sharing.shared_copy(base).weight.data = torch.zeros(4, 4)  # rebinding is fine
    assert sharing.written_in_place(fresh) == []


def test_weight_bytes_counts_shared_and_tied_storage_once_and_quantized_weights_by_their_data():
    shared = nn.Linear(100, 100)
    model = nn.Sequential(shared, shared, nn.Linear(100, 10))
    assert sharing.weight_bytes(model) == (100 * 100 + 100 + 100 * 10 + 10) * 4
    assert sharing.weight_bytes([model, shared]) == sharing.weight_bytes(model)
    import torchao  # a dev dependency: quantization is part of what is tested
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = nn.Sequential(nn.Linear(256, 256))
    quantize_(layer, Int8WeightOnlyConfig())
    int8 = sharing.weight_bytes(layer)
    assert 256 * 256 <= int8 < 256 * 256 * 1.1 + 256 * 4 * 4, torchao.__version__


def test_meta_tensors_hold_no_bytes():
    with torch.device("meta"):
        model = nn.Linear(1000, 1000)
    assert sharing.weight_bytes(model) == 0


def _strategy_names() -> list[str]:
    from strategies.core.registry import BUILTIN

    return sorted(BUILTIN)


@pytest.mark.parametrize("name", _strategy_names())
def test_every_strategy_leaves_the_loaded_model_and_the_other_stacks_alone(name):
    from strategies import parse_stack
    from strategies.core.registry import get_strategy

    stack = parse_stack(SPECS.get(name, name))
    reasons = {}
    for model_name in CANDIDATES:
        base = _loaded(model_name)
        reason = next((r for s in stack if (r := s.supports(base))), None)
        if reason is None or name in PAST_REFUSAL:
            break
        reasons[model_name] = reason
    else:
        raise AssertionError(f"{name} applies to none of {', '.join(CANDIDATES)}: {reasons}")
    checksum = _checksum(base)
    other = base.clone(share_weights=True)
    other_before = _generate(other)
    versions = sharing.versions(base)
    shared = sharing.storages(base)

    arm = base.clone(share_weights=True)
    for strategy in stack:  # as StrategyStack.apply, past a device refusal (PAST_REFUSAL)
        arm = strategy.apply(arm)
    _generate(arm)

    assert sharing.written_in_place(versions) == []
    assert _checksum(base) == checksum, f"{name} changed the loaded model's weights"
    assert torch.equal(_generate(other), other_before), f"{name} changed another stack's output"
    strategy = get_strategy(name)
    if not (strategy.rewrites or strategy.adds_networks):
        added = {k: n for k, n in sharing.storages(arm).items() if k not in shared}
        assert sum(added.values()) < 64 * 1024, f"{name} holds weights it does not declare"


def test_precision_estimates_the_bytes_it_adds():
    from strategies import parse_stack

    base = _loaded("digits-unet")
    (bf16,) = parse_stack("bf16")
    floats = sum(t.numel() for t in sharing.tensors_of(base.components().values())
                 if t.is_floating_point())
    assert bf16.added_weight_bytes(base) == floats * 2
    (deepcache,) = parse_stack("deepcache")
    assert deepcache.added_weight_bytes(base) == 0
