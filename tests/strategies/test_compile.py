"""torch.compile: compiled output equals eager within the stated tolerance, the compile time
is recorded as a cold cost, and modes that cannot run here are refused with the reason."""

from __future__ import annotations

import pytest
import torch

from strategies import parse_stack
from strategies.compile import TOLERANCE, Compile, Config, compile_module
from tests.support.tiny_diffusion import PROMPTS, SEEDS, tiny_dit, tiny_unet


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.lin = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.nn.functional.silu(self.conv(x)).flatten(1))


def test_compile_module_matches_eager_and_records_compile_time():
    torch.manual_seed(0)
    module = _Tiny().eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        eager = module(x)
        cold: dict = {}
        compiled = compile_module(module, Config(backend="aot_eager"), cold)
        out = compiled(x)
        again = compiled(x)
    torch.testing.assert_close(out, eager, atol=1e-6, rtol=1e-5)
    assert torch.equal(out, again)
    assert cold["compile_s"] > 0 and cold["compiles"] == 1
    before = cold["compile_s"]
    with torch.no_grad():
        compiled(x)
    assert cold["compile_s"] == before  # a warm call adds nothing


@pytest.mark.parametrize("factory", [tiny_unet, tiny_dit], ids=["unet", "dit"])
def test_compiled_model_matches_eager(factory):
    """Graph capture of the real denoisers (aot_eager: dynamo + AOT autograd, no codegen)."""
    model = factory(steps=2)
    eager = model.generate(PROMPTS, SEEDS)
    compiled = parse_stack("compile:backend=aot_eager").apply(model.clone())
    images = compiled.generate(PROMPTS, SEEDS)
    assert (images - eager).abs().max() <= TOLERANCE
    assert compiled.notes["cold"]["compile_s"] > 0
    assert type(compiled.denoiser).__name__ == "OptimizedModule"
    # The pipeline still reaches the original module through the wrapper.
    assert compiled.denoiser.config.sample_size == 16


@pytest.mark.slow
@pytest.mark.parametrize("factory", [tiny_unet, tiny_dit], ids=["unet", "dit"])
def test_inductor_output_matches_eager_within_tolerance(factory):
    """inductor generates C++ kernels: minutes on a busy 2-core CPU."""
    model = factory(steps=3)
    eager = model.generate(PROMPTS, SEEDS)
    compiled = Compile(Config()).apply(model.clone())
    images = compiled.generate(PROMPTS, SEEDS)
    assert (images - eager).abs().max() <= TOLERANCE


def test_compile_stacks_last_and_with_caches():
    stack = parse_stack("compile+fbcache+bf16")
    assert [s.name for s in stack] == ["bf16", "fbcache", "compile"]
    model = parse_stack("fbcache:threshold=0+compile:backend=aot_eager").apply(tiny_dit(steps=2))
    first = model.generate(PROMPTS, SEEDS)
    assert torch.equal(first, model.generate(PROMPTS, SEEDS))


def test_modes_that_need_a_gpu_are_refused_on_the_cpu():
    reason = Compile(Config(mode="reduce-overhead")).supports_device("cpu")
    assert reason and "CUDA" in reason
    assert Compile(Config(mode="max-autotune")).supports_device("cpu") is None
    assert Compile().spec == "compile:mode=default"


@pytest.mark.parametrize("factory", [tiny_unet, tiny_dit], ids=["unet", "dit"])
def test_regional_compile_compiles_each_repeated_block_in_place(factory):
    """scope=blocks: the blocks diffusers declares as repeated are compiled in place (the
    denoiser stays the module itself), the output matches eager, compile time is recorded."""
    from strategies.compile import repeated_blocks

    model = factory(steps=2)
    eager = model.generate(PROMPTS, SEEDS)
    compiled = parse_stack("compile:backend=aot_eager,scope=blocks").apply(model.clone())
    assert type(compiled.denoiser).__name__ == type(model.denoiser).__name__
    blocks = repeated_blocks(compiled.denoiser)
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    assert not any(b._compiled_call_impl is not None for b in repeated_blocks(model.denoiser))
    images = compiled.generate(PROMPTS, SEEDS)
    assert (images - eager).abs().max() <= TOLERANCE
    assert compiled.notes["cold"]["compile_s"] > 0
    assert compiled.notes["compile"]["scope"] == "blocks"


def test_regional_compile_is_refused_without_repeated_blocks():
    from tests.support.tiny_ar import tiny_model

    class NoBlocks(torch.nn.Module):
        _repeated_blocks: list[str] = []

    from strategies.compile import compile_module as compile_

    with pytest.raises(ValueError, match="declares no repeated blocks"):
        compile_(NoBlocks(), Config(scope="blocks"))
    reason = Compile(Config(scope="blocks")).supports(tiny_model())
    assert reason and "declares none" in reason and "scope=full" in reason


def test_compile_reaches_the_network_a_token_model_runs():
    """Janus generates through its language model, never through its own forward: compile
    must compile that (cold.compiles counts what really compiled)."""
    from bench.models.registry import load_model

    model = load_model("arch:janus@tiny")
    compiled = parse_stack("compile:backend=aot_eager").apply(model.clone())
    assert compiled.notes["compile"]["target"] == "model.language_model"
    compiled.generate(["a cat"], [0])
    assert compiled.notes["cold"]["compiles"] >= 1
    assert model.notes.get("cold", {}).get("compiles", 0) == 0  # the original is untouched
