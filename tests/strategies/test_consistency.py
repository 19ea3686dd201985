"""Consistency distillation: the training algebra matches diffusers' own schedulers (DDIM for
the teacher's solver step, LCMScheduler for the consistency function); the strategy refuses
what it cannot train, in words; a tiny run yields a student sampled by LCMScheduler in
``steps`` single (guidance-free) denoiser calls; its weights are cached and the teacher is left
alone. The slow tests hold the trained student to the quality targets."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler

from strategies import StrategyError, parse_stack, parse_strategy
from strategies.adapters import get_adapter
from strategies.consistency import Config, ConsistencyTask, lcm_scheduler
from tests.support.tiny_diffusion import PROMPTS, SEEDS, count_calls, tiny_dit, tiny_unet

#: A tiny training run: enough to exercise every piece, in seconds.
TINY = "train_steps=2,batch_size=4"


# -- configuration --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("consistency:steps=0", "out of range"),
        ("consistency:steps=9", "out of range"),
        ("consistency:train_steps=-1", "out of range"),
        ("consistency:skip=0", "out of range"),
        ("consistency:ema=1", "out of range"),
        ("consistency:guidance=0.5", "out of range"),
        ("consistency:lr=0", "out of range"),
        ("consistency:loss=l1", "not allowed"),
        ("consistency:augment=blur", "unknown augmentation"),
        ("consistency:steps=two", "not a valid int"),
    ],
)
def test_config_is_checked(spec: str, message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        parse_strategy(spec)


def test_config_defaults_and_spec() -> None:
    strategy = parse_strategy("consistency")
    assert strategy.spec == "consistency:steps=4"
    assert parse_strategy("consistency:steps=2,augment=all").config.augment == "all"
    assert Config().train_steps > 0 and 0 < Config().ema < 1
    assert parse_stack("consistency").trains
    lines = "\n".join(Config.describe_params())
    for name in ("steps=4", "train_steps", "skip=20", "ema=0.95", "augment", "1 to 8"):
        assert name in lines


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ("steps:n=4", "step count"),
        ("scheduler", "LCMScheduler"),
        ("distill", "training strategy"),
        ("prune-structured", "training strategy"),
    ],
)
def test_incompatible_stacks(other: str, message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        parse_stack(f"consistency+{other}")


# -- refusals ---------------------------------------------------------------------------------
def test_refuses_random_weight_models() -> None:
    model = tiny_unet()
    model.random_weights = True
    reason = parse_strategy("consistency").supports(model)
    assert reason and "random weights" in reason and "cannot be distilled" in reason


def test_refuses_models_without_training_data() -> None:
    model = tiny_dit()

    def no_data(batch_size: int, seed: int = 0):
        raise FileNotFoundError("the training split is not shipped")

    model.train_batches = no_data
    reason = parse_strategy("consistency").supports(model)
    assert reason and "no training data" in reason and "not shipped" in reason


def test_refuses_other_kinds_and_schedules() -> None:
    model = tiny_unet()
    model.kind = "autoregressive"
    reason = parse_strategy("consistency").supports(model)
    assert reason and "causal LM" in reason
    reason = parse_strategy("consistency:skip=30").supports(tiny_unet())
    assert reason and "does not divide" in reason and "1000" in reason
    reason = parse_strategy("consistency:skip=125,steps=8").supports(tiny_unet())
    assert reason is None
    assert parse_strategy("consistency").supports(tiny_dit()) is None


# -- the algebra against diffusers' schedulers -------------------------------------------------
def _task(model, skip: int = 20, guidance: float = 3.0) -> ConsistencyTask:
    return ConsistencyTask(get_adapter(model), lcm_scheduler(model.pipe.scheduler, skip), skip, guidance)


def test_teacher_step_is_a_guided_ddim_step() -> None:
    model = tiny_unet()
    task = _task(model)
    images, prompts = next(iter(model.train_batches(3, 0)))
    batch = task.make_batch(images, prompts, torch.Generator().manual_seed(1))
    t = torch.tensor([519, 519, 519])
    batch.extra.update(t=t, s=t - 20)
    x_t = task.scheduler.add_noise(batch.target, batch.extra["noise"], t)
    ours = task.teacher_step(model.denoiser, x_t, batch)
    # Reference: the pipeline's own guidance and diffusers' DDIM step (50 trailing steps:
    # each step goes back 20 timesteps) from 519 to 499.
    ddim = DDIMScheduler.from_config(model.pipe.scheduler.config)
    ddim.set_timesteps(50)
    assert 519 in ddim.timesteps.tolist()
    with torch.no_grad():
        embeds = torch.cat([batch.extra["uncond"], batch.extra["cond"]])
        out = model.pipe.predict(torch.cat([x_t, x_t]), 519, embeds, torch.float32)
    uncond, cond = out.chunk(2)
    guided = uncond + 3.0 * (cond - uncond)
    expected = ddim.step(guided, 519, x_t, eta=0.0).prev_sample
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon", "sample"])
def test_consistency_function_is_lcm_schedulers_denoised(prediction: str) -> None:
    model = tiny_unet()
    model.pipe.scheduler = DDIMScheduler.from_config(
        model.pipe.scheduler.config, prediction_type=prediction
    )
    task = _task(model)
    lcm = lcm_scheduler(model.pipe.scheduler, 20)
    lcm.set_timesteps(4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 16, 16, generator=gen)
    output = torch.randn(2, 1, 16, 16, generator=gen)
    for t in lcm.timesteps.tolist():
        _, denoised = lcm.step(output, t, x, generator=gen, return_dict=False)
        ours = task.consistency(output, x, torch.full((2,), t))
        torch.testing.assert_close(ours, denoised, rtol=1e-4, atol=1e-5)
    # The boundary condition: at t = 0 the consistency function is the identity.
    torch.testing.assert_close(task.consistency(output, x, torch.zeros(2, dtype=torch.long)), x)


def test_batches_follow_the_lcm_schedule() -> None:
    model = tiny_unet()
    task = _task(model, skip=50, guidance=1.0)
    images, prompts = next(iter(model.train_batches(64, 0)))
    batch = task.make_batch(images, prompts, torch.Generator().manual_seed(0))
    t, s = batch.extra["t"], batch.extra["s"]
    assert set(t.tolist()) <= set(range(49, 1000, 50)) and len(set(t.tolist())) > 5
    torch.testing.assert_close(s, (t - 50).clamp(min=0))
    assert "uncond" not in batch.extra  # no guidance: no unconditional teacher call
    assert batch.target.min() >= -1 and batch.target.max() <= 1


# -- training, caching, sampling ----------------------------------------------------------------
@pytest.mark.parametrize("factory", [tiny_unet, tiny_dit], ids=["unet", "dit"])
@pytest.mark.parametrize("steps", [1, 3])
def test_tiny_run_samples_in_steps_calls(factory, steps: int) -> None:
    teacher_model = factory()
    before = {k: v.clone() for k, v in teacher_model.denoiser.state_dict().items()}
    call_args = dict(teacher_model.call_args)
    seed = 100 + steps + (10 if factory is tiny_dit else 0)  # a training run of its own
    spec = f"consistency:{TINY},steps={steps},seed={seed}"
    model = parse_stack(spec).apply(copy.deepcopy(teacher_model))
    notes = model.notes["consistency"]
    assert notes["training"]["steps"] == 2 and notes["training"]["cache_hit"] is False
    assert model.notes["cold"]["training_s"] > 0
    assert isinstance(model.pipe.scheduler, LCMScheduler)
    assert model.call_args == {**call_args, "num_inference_steps": steps, "guidance_scale": 1.0}
    assert type(model.denoiser) is type(teacher_model.denoiser)
    assert len(notes["timesteps"]) == steps and notes["timesteps"][0] == 999

    calls = count_calls(model.denoiser)
    batch_sizes: list[int] = []

    def record_batch(_module, args, kwargs) -> None:
        sample = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        batch_sizes.append(sample.shape[0])

    model.denoiser.register_forward_pre_hook(record_batch, with_kwargs=True)
    fired: list[int] = []
    out = model.generate(PROMPTS, SEEDS, step_callback=fired.append)
    assert fired == list(range(steps))
    assert calls[0] == steps and batch_sizes == [len(PROMPTS)] * steps  # no CFG batch
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    # The same prompt and seed give the same image (the re-noising is seeded per image).
    torch.testing.assert_close(model.generate(PROMPTS[:1], SEEDS[:1]), out[:1])

    # The teacher is untouched: weights, scheduler, call arguments.
    for key, value in teacher_model.denoiser.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert isinstance(teacher_model.pipe.scheduler, DDIMScheduler)
    assert teacher_model.call_args == call_args


def test_second_apply_is_a_cache_hit_for_any_step_count() -> None:
    base = tiny_unet()
    first = parse_stack(f"consistency:{TINY},seed=3").apply(copy.deepcopy(base))
    key = first.notes["consistency"]["training"]["cache_key"]
    for spec in (f"consistency:{TINY},seed=3", f"consistency:{TINY},seed=3,steps=2"):
        again = parse_stack(spec).apply(copy.deepcopy(base))
        training = again.notes["consistency"]["training"]
        assert training["cache_hit"] is True and training["cache_key"] == key
        assert again.notes["cold"]["training_s"] == pytest.approx(first.notes["cold"]["training_s"])
        for (name, a), (_, b) in zip(first.denoiser.state_dict().items(),
                                     again.denoiser.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    # Training happened (the weights moved), and another training setting trains anew.
    assert any(not torch.equal(a, b) for a, b in zip(base.denoiser.state_dict().values(),
                                                      first.denoiser.state_dict().values(),
                                                      strict=True))
    other = parse_stack(f"consistency:{TINY},seed=3,ema=0.5").apply(copy.deepcopy(base))
    assert other.notes["consistency"]["training"]["cache_hit"] is False
    assert other.notes["consistency"]["training"]["cache_key"] != key


def test_folded_guidance_follows_the_model() -> None:
    model = tiny_unet(guidance=2.0)
    out = parse_stack(f"consistency:{TINY}").apply(model)
    assert out.notes["consistency"]["guidance_folded"] == 2.0
    assert out.notes["consistency"]["teacher_calls_per_image"] == 2 * 6
    assert out.notes["consistency"]["denoiser_calls_per_image"] == 4
    explicit = parse_stack(f"consistency:{TINY},guidance=5").apply(tiny_unet(guidance=2.0))
    assert explicit.notes["consistency"]["guidance_folded"] == 5.0


# -- the real quality targets (slow: trains the default student) ----------------------------------
def _generate(model, n: int) -> tuple[torch.Tensor, list[str], list[int]]:
    prompts, labels = model.prompts(n)
    seeds = list(range(n))
    images = torch.cat([model.generate(prompts[i : i + 100], seeds[i : i + 100])
                        for i in range(0, n, 100)])
    return images, prompts, labels


@pytest.mark.slow
def test_four_steps_keep_the_digits_unets_quality(digits_unet) -> None:
    """4 steps: adherence >= 0.97 and FID inside the baseline's noise band (200 images).
    Trains the default student (about half an hour on one CPU thread)."""
    from bench.quality.adherence import adherence
    from bench.quality.suite import QualitySuite

    student = parse_stack("consistency:steps=4").apply(digits_unet.clone())
    images, prompts, labels = _generate(student, 200)
    assert adherence(student.classifier(), images, labels) >= 0.97
    suite = QualitySuite(digits_unet)
    base_images, _, _ = _generate(digits_unet, 200)
    fid = suite.score(images, None, prompts)[0]["fid"]
    base_fid = suite.score(base_images, None, prompts)[0]["fid"]
    assert abs(fid - base_fid) < 2 * suite.noise_floor(200)["fid"]["std"]
