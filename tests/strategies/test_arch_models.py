"""The strategies on the architecture models (``arch:<family>@tiny``): one regression test per
failure the compatibility script (tests/benchmarks/scripts/arch_compat.py) found, and the
refusals that must stay refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies import StrategyError, parse_stack
from strategies.core.base import Strategy
from strategies.core.registry import get_strategy
from tests.support.arch import generate, tiny
from tests.support.sdpa import kernels_seen


def _apply(spec: str, family: str):
    return parse_stack(spec).apply(tiny(family).clone())


def _count_calls(module: torch.nn.Module) -> list[int]:
    counter = [0]
    module.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


# -- precision -------------------------------------------------------------------------------
def test_bf16_reaches_every_text_encoder_of_flux():
    """Regression: FLUX's T5 (text_encoder_2) stayed fp32 and the bf16 transformer failed with
    "mat1 and mat2 must have the same dtype"."""
    model = _apply("bf16", "flux")
    dtypes = {role: next(m.parameters()).dtype for role, m in model.components().items()}
    assert set(dtypes) == {"denoiser", "text_encoder", "text_encoder_2", "decoder"}
    assert set(dtypes.values()) == {torch.bfloat16}
    images = generate(model, 2)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()


# -- schedulers ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["sd3", "flux", "sana"])
def test_flow_models_get_the_flow_form_of_the_solver(family):
    """Regression: on FLUX every swap failed (custom sigmas, mu); on SD3 a DDPM-family solver
    was silently put on a velocity-predicting model."""
    model = _apply("scheduler:name=dpm-solver", family)
    scheduler = model.pipe.scheduler
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert scheduler.config.use_flow_sigmas
    assert scheduler.config.prediction_type == "flow_prediction"
    assert scheduler.config.flow_shift == 3.0
    assert model.notes["scheduler"]["flow_matching"] is True
    images = generate(model, 3)
    assert torch.isfinite(images).all()
    euler = _apply("scheduler:name=euler", family).pipe.scheduler
    assert type(euler).__name__ == "FlowMatchEulerDiscreteScheduler" and euler.config.shift == 3.0


@pytest.mark.parametrize("family", ["qwen-image", "z-image"])
def test_solvers_that_take_no_sigmas_are_refused_where_the_pipeline_passes_its_own(family):
    """Qwen-Image's and Z-Image's pipelines hand the scheduler their own sigmas on every
    call (FLUX's drop them for a flow-sigma solver): DPM-Solver++ would fail mid-call."""
    for name in ("dpm-solver", "unipc", "heun"):
        reason = parse_stack(f"scheduler:name={name}").strategies[0].supports(tiny(family))
        assert reason and "its own sigma schedule" in reason and "use euler" in reason
    model = _apply("scheduler:name=euler", family)  # built for a pipeline's sigmas
    assert torch.isfinite(generate(model, 3)).all()


def test_flow_schedule_keeps_the_models_shift():
    original = tiny("sd3").pipe.scheduler
    reference = type(original).from_config(original.config)
    reference.set_timesteps(10)
    swapped = _apply("scheduler:name=unipc", "sd3").pipe.scheduler
    swapped.set_timesteps(10)
    ours, theirs = np.asarray(swapped.sigmas[:5]), np.asarray(reference.sigmas[:5])
    assert np.abs(ours - theirs).max() < 0.03
    unshifted = np.linspace(1.0, 0.1, 10)[:5]  # what a lost shift (1.0) would give
    assert np.abs(ours - unshifted).max() > 0.05


@pytest.mark.parametrize("name", ["ddim", "pndm"])
def test_noise_prediction_solvers_are_refused_on_flow_models(name):
    for family in ("sd3", "flux", "sana"):
        reason = parse_stack(f"scheduler:name={name}").strategies[0].supports(tiny(family))
        assert reason and "flow-matching" in reason and "no flow-matching form" in reason
    # ...and still applied, as before, to noise-prediction models.
    model = _apply(f"scheduler:name={name}", "sd15")
    assert model.notes["scheduler"]["flow_matching"] is False


def test_heun_is_refused_where_the_pipeline_shifts_by_resolution():
    reason = parse_stack("scheduler:name=heun").strategies[0].supports(tiny("flux"))
    assert reason and "mu" in reason
    assert parse_stack("scheduler:name=heun").strategies[0].supports(tiny("sd3")) is None


# -- attention kernel ------------------------------------------------------------------------
def test_attention_backend_reaches_flux_through_the_dispatcher():
    """Regression: FLUX's processor calls SDPA through diffusers' dispatcher and was refused
    as "does not call PyTorch's scaled_dot_product_attention"."""
    base = tiny("flux")
    model = _apply("attention:backend=math", "flux")
    notes = model.notes["attention"]
    assert notes["processors_using_sdpa"] == notes["processors"] == 6
    seen, images = kernels_seen(model, lambda: generate(model, 2))
    assert seen and set(seen) == {(True, False)}
    torch.testing.assert_close(images, generate(base, 2), atol=1e-4, rtol=0)


def test_sanas_linear_attention_is_not_counted_as_sdpa():
    model = _apply("attention", "sana")
    notes = model.notes["attention"]
    assert 0 < notes["processors_using_sdpa"] < notes["processors"]  # cross-attention only


# -- memory format and fused projections ----------------------------------------------------
def test_channels_last_converts_flux_decoder():
    """Regression: FLUX's transformer has no convolution, so channels-last was refused; its
    VAE decoder is all convolutions."""
    model = _apply("channels-last", "flux")
    assert model.notes["channels_last"]["conv_layers"] == 0
    assert model.notes["channels_last"]["decoder_conv_layers"] > 10
    weight = model.components()["decoder"].decoder.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(generate(model, 2), generate(tiny("flux"), 2), atol=1e-4, rtol=0)


def test_fused_qkv_counts_fluxs_fused_attention():
    """Regression: FLUX's attention modules were fused but counted as 0."""
    model = _apply("fused-qkv", "flux")
    assert model.notes["fused_qkv"]["attention_modules_fused"] == 6  # 2 double + 4 single
    torch.testing.assert_close(generate(model, 2), generate(tiny("flux"), 2), atol=1e-4, rtol=0)


def test_fused_qkv_fuses_sanas_projections_itself():
    """Regression: on Sana diffusers' fuse_qkv_projections() fused nothing and the strategy
    reported success; it now fuses them and runs Sana's processors on the fused matmul."""
    base = tiny("sana")
    model = _apply("fused-qkv", "sana")
    assert model.notes["fused_qkv"]["attention_modules_fused"] == 8  # 4 blocks x (self, cross)
    block = model.denoiser.transformer_blocks[0]
    assert hasattr(block.attn1, "to_qkv") and hasattr(block.attn2, "to_kv")
    calls = _count_calls(block.attn1.to_q)
    fused_calls = _count_calls(block.attn1.to_qkv)
    images = generate(model, 2)
    assert calls[0] == 0 and fused_calls[0] == 2
    torch.testing.assert_close(images, generate(base, 2), atol=1e-4, rtol=0)
    # Stacked with the attention kernel, the wrapped cross-attention still counts as SDPA.
    pinned = parse_stack("fused-qkv+attention:backend=math").apply(base.clone())
    assert pinned.notes["attention"]["processors_using_sdpa"] == 4


def test_fused_qkv_refuses_processors_without_a_fused_form():
    from diffusers.models.attention_processor import AttnProcessor

    from strategies.fused_qkv import FusedQKV

    model = tiny("sana").clone()
    for module in model.denoiser.modules():
        if hasattr(module, "set_processor") and hasattr(module, "to_q"):
            module.set_processor(AttnProcessor())  # classic, unwrappable, no own fusion
    reason = FusedQKV().supports(model)
    assert reason and "fuses nothing" in reason and "AttnProcessor" in reason


# -- training strategies refuse random weights ---------------------------------------------
@pytest.mark.parametrize(
    "spec",
    ["distill", "fusion", "prune-structured", "prune-structured:steps=0,importance=taylor"],
)
def test_training_strategies_refuse_random_weights(spec):
    for family in ("sd15", "pixart-sigma"):
        strategy = parse_stack(spec).strategies[0]
        reason = strategy.supports(tiny(family))
        assert reason and reason.startswith("random-weight architecture models cannot be")
    if spec == "distill":
        assert "cannot be distilled meaningfully" in reason


def test_training_data_is_refused_for_random_weights():
    from strategies.adapters.base import get_adapter
    from strategies.core.augment import AugmentConfig
    from strategies.core.training import training_batches

    model = tiny("sd15")
    with pytest.raises(StrategyError, match="random-weight architecture models have no data.*nothing can be trained"):
        next(training_batches(model, get_adapter(model), 2, 0, AugmentConfig.parse("none")))


def test_unet_adapter_builds_sdxls_inputs_with_its_added_conditioning():
    """Regression: SDXL's encode_prompt has four results and its UNet needs the pooled text
    embedding and the six size numbers."""
    from strategies.adapters.base import first_tensor, get_adapter

    model = tiny("sdxl")
    adapter = get_adapter(model)
    inputs = adapter.example_inputs(adapter.module(), batch_size=2)
    added = inputs["added_cond_kwargs"]
    assert added["text_embeds"].shape == (2, 48)
    assert added["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]] * 2
    with torch.no_grad():
        out = first_tensor(adapter.module()(**inputs))
    assert out.shape == inputs["sample"].shape


@pytest.mark.parametrize("family", ["sd15", pytest.param("sdxl", marks=pytest.mark.slow)])
def test_structured_pruning_without_recovery_on_the_sd_unets(family):
    """Regression: the UNet adapter called SD's encode_prompt without num_images_per_prompt
    (SD 1.5) and took SDXL's four results for two, without its added conditioning."""
    model = tiny(family).clone()
    # Regression: with frozen parameters torch-pruning traced no graph and pruned nothing.
    model.denoiser.requires_grad_(False)
    model = parse_stack("prune-structured:steps=0,ratio=0.25").apply(model)
    notes = model.notes["prune-structured"]
    assert notes["params_after"] < 0.8 * notes["params_before"]
    assert notes["macs_after"] < notes["macs_before"]
    images = generate(model, 2)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()


# -- diffusers' caches on transformers without CacheMixin ----------------------------------
def test_taylorseer_predicts_attention_on_pixart():
    """Regression: PixArt, SD3 and Sana transformers have no CacheMixin and were refused."""
    model = _apply("taylorseer:interval=3,warmup=1", "pixart-sigma")
    calls = _count_calls(model.denoiser.transformer_blocks[0].attn1.to_q)
    generate(model, 7)
    assert model.notes["taylorseer"]["context"].startswith("call-context hook")
    assert 0 < calls[0] < 7  # one self-attention per step without the cache


@pytest.mark.parametrize("family", ["sd3", "pixart-sigma", "sana"])
def test_cache_state_is_reset_between_generations(family):
    """Each generation starts from an empty cache: the same call twice gives the same images,
    and a different first call does not change the next one."""
    model = _apply("pab:spatial=3,cross=3,t_low=-1,t_high=1001", family)
    first = generate(model, 6)
    generate(model, 6, prompts=("a lighthouse",), seeds=(3,))
    torch.testing.assert_close(generate(model, 6), first, rtol=0, atol=0)
    state = model.denoiser._accelbench_cache_state
    assert state.generations == 3
    reference = generate(tiny(family), 6)
    assert not torch.equal(first, reference)  # the broadcast changed the computation


def test_fastercache_halves_sd3s_batch_with_its_pooled_embedding():
    """Regression: FasterCache halved SD3's batch but not ``pooled_projections`` (a size
    mismatch in the time-text embedding)."""
    model = _apply("fastercache:uncond=2", "sd3")
    sizes: list[int] = []
    model.denoiser.pos_embed.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    images = generate(model, 6)
    assert torch.isfinite(images).all()
    assert sizes[0] == 2 and 1 in sizes  # guidance batch of 2, its conditional half alone


def test_fastercache_reuses_attention_on_guidance_distilled_flux():
    model = _apply("fastercache", "flux")
    calls = _count_calls(model.denoiser.transformer_blocks[0].attn.to_q)
    generate(model, 8)
    assert 0 < calls[0] < 8


def test_fbcache_reuses_the_tail_blocks_on_pixart():
    model = _apply("fbcache:threshold=10", "pixart-sigma")
    # Inner layers: a skipped block's own call still runs, its layers do not.
    last = _count_calls(model.denoiser.transformer_blocks[-1].ff)
    first = _count_calls(model.denoiser.transformer_blocks[0].ff)
    generate(model, 4)
    assert first[0] == 4 and last[0] == 1  # only the first step computes the tail


def test_fbcache_on_sd3_hands_the_text_stream_through_its_last_block():
    """Regression: SD3's last joint block returns no text stream (None), and FirstBlockCache's
    residual of the text stream failed on it."""
    baseline = generate(tiny("sd3").clone(), 4)
    exact = _apply("fbcache:threshold=0", "sd3")  # never reuses: the hooks must change nothing
    assert torch.equal(generate(exact, 4), baseline)
    last_block = f"transformer_blocks.{len(exact.denoiser.transformer_blocks) - 1}"
    assert exact.notes["fbcache"]["text_passthrough"] == [last_block]
    model = _apply("fbcache:threshold=10", "sd3")  # reuses every step after the first
    last = _count_calls(model.denoiser.transformer_blocks[-1].ff)
    first = _count_calls(model.denoiser.transformer_blocks[0].ff)
    images = generate(model, 4)
    assert first[0] == 4 and last[0] == 1 and torch.isfinite(images).all()


def test_fbcache_layouts_diffusers_cannot_hook_are_refused():
    fbcache = parse_stack("fbcache").strategies[0]
    assert "TransformerBlockRegistry" in fbcache.supports(tiny("sana"))
    assert "deepcache" in fbcache.supports(tiny("sdxl"))


def test_only_activation_driven_speedups_are_flagged():
    flagged = {name for name in ("fbcache", "taylorseer", "pab", "fastercache", "deepcache",
                                 "tome", "steps", "quant", "compile")
               if get_strategy(name).depends_on_activations}
    assert flagged == {"fbcache"}
    assert Strategy.depends_on_activations is False


# -- UNet caches on SDXL ---------------------------------------------------------------------
def test_deepcache_on_sdxl_skips_the_deep_layers():
    model = _apply("deepcache:interval=3", "sdxl")
    state = model.denoiser._accelbench_deepcache
    images = generate(model, 4)
    assert torch.isfinite(images).all()
    assert state.calls == 4 and state.partial_calls == 2
    assert "mid_block" in model.notes["deepcache"]["cached_layers"]


def test_tome_on_sdxl_merges_in_the_first_attention_level():
    model = _apply("tome", "sdxl")
    generate(model, 2)
    tokens = model.denoiser._accelbench_tome.tokens
    merged = [(n, m) for n, m in tokens if m < n]
    assert merged and all(n == 16 and m == 8 for n, m in merged)  # 4x4 tokens at level 2


# -- compilation -----------------------------------------------------------------------------
def test_every_compiled_arm_in_a_process_is_compiled():
    """Regression: diffusers' denoisers share one forward wrapper, and past dynamo's limit of
    compiled variants per function (8) further compiled arms silently ran eagerly (the
    compatibility script's compile cells took 0.1 s)."""
    import torch._dynamo

    torch._dynamo.reset()
    # The config's own patch (restores the limit afterwards; monkeypatch would delete it).
    with torch._dynamo.config.patch(recompile_limit=1):
        # Two different graphs through the same wrapper, past a limit of 1 (a clone of an
        # already compiled model would rightly reuse its graph instead).
        arms = [
            _apply("compile:backend=eager", "pixart-sigma"),
            _apply("bf16+compile:backend=eager", "pixart-sigma"),
        ]
        assert torch._dynamo.config.recompile_limit >= 64
        for arm in arms:
            generate(arm, 1)
            assert arm.notes["cold"]["compiles"] > 0
    torch._dynamo.reset()
