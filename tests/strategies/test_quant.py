"""``quant``: Linear weights really become int8 (per-row scales), convolutions stay float,
fp8 is refused on the CPU with the reason, and the quantized model still generates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from strategies import StrategyError, parse_stack, parse_strategy
from strategies.quant import quantized_weight_dtype


def _linears(module: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear)}


@pytest.mark.parametrize("mode", ["int8-weight-only", "int8-dynamic"])
def test_linear_weights_are_int8(digits_unet, mode: str) -> None:
    original = {n: m.weight.detach().clone() for n, m in _linears(digits_unet.denoiser).items()}
    model = parse_stack(f"quant:mode={mode}").apply(digits_unet.clone())
    linears = _linears(model.denoiser)
    assert linears and set(linears) == set(original)
    for name, layer in linears.items():
        weight = layer.weight
        assert quantized_weight_dtype(weight) == torch.int8, name
        assert weight.qdata.dtype == torch.int8 and weight.qdata.shape == original[name].shape
        # Independent check of symmetric per-output-channel int8: the error of every weight
        # is at most half a step of its row's scale (absmax / 127).
        w = original[name]
        step = w.abs().amax(dim=1, keepdim=True) / 127
        err = (weight.dequantize() - w).abs()
        assert (err <= step / 2 + 1e-6).all(), name
    for layer in model.denoiser.modules():
        if isinstance(layer, nn.Conv2d):
            assert type(layer.weight) is nn.Parameter and layer.weight.dtype == torch.float32
    notes = model.notes["quant"]
    assert notes["quantized_linear_layers"] == len(linears)
    assert notes["quantized_weight_params"] == sum(w.numel() for w in original.values())
    assert notes["conv_layers_left_fp"] > 0 and notes["quantized_dtypes"] == ["int8"]


def test_quantized_model_generates_close_to_baseline(digits_unet) -> None:
    prompts, _ = digits_unet.prompts(2)
    ref = digits_unet.generate(prompts, [0, 1], num_inference_steps=3)
    model = parse_stack("quant").apply(digits_unet.clone())
    out = model.generate(prompts, [0, 1], num_inference_steps=3)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out - ref).abs().mean() < 0.05
    # The original model is untouched (the runner applies stacks to clones).
    assert all(type(m.weight) is nn.Parameter for m in _linears(digits_unet.denoiser).values())


def test_fp8_refused_on_cpu_with_reason() -> None:
    reason = parse_strategy("quant:mode=fp8").supports_device("cpu")
    assert reason and "8.9" in reason
    with pytest.raises(StrategyError, match="cannot run on cpu"):
        parse_stack("quant:mode=fp8").check_device("cpu")


def test_spec_defaults_and_bad_mode() -> None:
    assert parse_strategy("quant").spec == "quant:mode=int8-weight-only"
    with pytest.raises(StrategyError, match="int8-dynamic"):
        parse_strategy("quant:mode=int4")
    with pytest.raises(StrategyError, match="appears twice"):
        parse_stack("quant+quant:mode=int8-dynamic")
