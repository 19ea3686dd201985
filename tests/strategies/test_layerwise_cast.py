"""``layerwise-cast``: the denoiser's weights stored in fp8 between uses, each layer cast up
to the model's dtype for its forward; the loaded model's weights untouched."""

from __future__ import annotations

import pytest
import torch

from bench.models.sharing import weight_bytes
from strategies import StrategyError, parse_stack
from tests.support.arch import generate, tiny
from tests.support.tiny_diffusion import PROMPTS, SEEDS, tiny_dit, tiny_unet


def _apply(spec: str, model):
    stack = parse_stack(spec)
    stack.check(model)
    return stack.apply(model.clone())


@pytest.mark.parametrize("make", [tiny_dit, tiny_unet], ids=["dit", "unet"])
def test_weights_are_stored_in_fp8_and_images_stay_close(make):
    model = make()
    baseline = model.generate(PROMPTS, SEEDS)
    cast = _apply("layerwise-cast", model)
    dtypes = {p.dtype for p in cast.denoiser.parameters()}
    assert torch.float8_e4m3fn in dtypes  # stored in fp8 ...
    assert torch.float32 in dtypes  # ... except the layers diffusers keeps wide (norms, embeddings)
    assert weight_bytes(cast.denoiser) < 0.5 * weight_bytes(model.denoiser)
    images = cast.generate(PROMPTS, SEEDS)
    assert images.shape == baseline.shape and torch.isfinite(images).all()
    assert not torch.equal(images, baseline)  # the weights lost precision once
    assert (images - baseline).abs().mean() < 0.1
    # the loaded model keeps its fp32 weights
    assert {p.dtype for p in model.denoiser.parameters()} == {torch.float32}
    # the weights stay fp8 after a call (cast back down after each layer's forward)
    assert torch.float8_e4m3fn in {p.dtype for p in cast.denoiser.parameters()}


def test_on_an_arch_model_after_bf16_it_computes_in_bf16():
    model = tiny("flux")
    cast = _apply("bf16+layerwise-cast:storage=fp8-e5m2", model)
    assert cast.dtype == torch.bfloat16
    assert torch.float8_e5m2 in {p.dtype for p in cast.denoiser.parameters()}
    assert torch.isfinite(generate(cast, steps=2)).all()


def test_the_layers_a_model_class_keeps_wide_stay_wide():
    """Regression: Z-Image's timestep embedder casts its input to its weights' dtype, so in
    fp8 storage it failed; diffusers names it precision-sensitive and it stays fp32."""
    cast = _apply("layerwise-cast", tiny("z-image"))
    assert {p.dtype for p in cast.denoiser.t_embedder.parameters()} == {torch.float32}
    assert torch.float8_e4m3fn in {p.dtype for p in cast.denoiser.layers.parameters()}
    assert torch.isfinite(generate(cast, steps=2)).all()


def test_it_does_not_stack_with_quantization():
    with pytest.raises(StrategyError, match="stored"):
        parse_stack("quant+layerwise-cast").check(tiny_dit())


def test_storage_is_checked():
    with pytest.raises(StrategyError, match="storage"):
        parse_stack("layerwise-cast:storage=int4")
