"""Few-step sampling by consistency distillation (LCM/LCD: Song et al. 2023; Luo et al. 2023).

The distillation that pays most in practice for diffusion models is not a smaller network but
fewer steps: a *consistency model* maps any point of the teacher's sampling trajectory (its
probability-flow ODE) straight to the trajectory's end, so a few evaluations replace the
teacher's 25-50. This module trains one, with latent consistency distillation (LCD), and
samples it with diffusers' :class:`~diffusers.LCMScheduler` (multistep consistency sampling:
jump to the clean image, re-noise to the next, lower timestep, jump again).

Training (one step, batch of training images ``x0`` and their prompts ``c``):

1. a timestep ``t = n * skip - 1`` of the LCM schedule (``n`` uniform in ``1 .. T / skip``,
   ``T`` the noise schedule's length) and its predecessor ``s = max(t - skip, 0)``;
   ``x_t = add_noise(x0, noise, t)`` with the pipeline's own noise schedule;
2. the student's consistency function ``f(x, t) = c_skip(t) x + c_out(t) x0_pred(x, t)``
   (``x0_pred`` from the denoiser's output under the schedule's prediction type; ``c_skip``,
   ``c_out`` are LCMScheduler's boundary scalings, so ``f(x, 0) = x``);
3. the teacher's ODE step: one DDIM step from ``t`` to ``s`` with classifier-free guidance
   at the fixed scale ``guidance`` (two teacher calls: unconditional and conditional);
4. the target ``f_target(x_s, s)``, computed by an exponential moving average (``ema``) of the
   student without gradients; the loss is the pseudo-Huber (or squared) distance between
   ``f(x_t, t)`` and the target.

The student starts as a copy of the teacher (same class, config and mixins, so every other
strategy that applies to the teacher applies to it). Trained weights are cached like every
training strategy's (:func:`strategies.core.training.train_or_load`, keyed by the teacher's
weights, this config without the sampling ``steps``, and the code version); one trained
student serves every step count. The training time is recorded as a one-off cost.

**Guidance is folded in at one fixed scale, and the student runs without classifier-free
guidance.** LCM's alternative, a guidance embedding added to the timestep embedding so the
scale stays a sampling-time knob, needs a new input on the denoiser: a changed architecture
the model's pipeline does not feed (it calls the denoiser with its own arguments), a new
layer to initialise and train, and a student that no longer is the teacher's class. Folding
one scale (the model's own ``guidance_scale`` unless ``guidance`` is given) keeps the
student architecturally identical to the teacher, and each sampling step then needs one
denoiser call on the conditional batch instead of two: the student's step costs half the
teacher's, on top of running ``steps`` steps instead of the teacher's count. What is lost is
changing the guidance scale at sampling time (retrain with another ``guidance`` instead);
SDXL-Lightning and Hyper-SD ship fixed-guidance students for the same reason.

Parameters: ``steps`` (1-8) sets the sampling steps; ``train_steps``, ``lr``, ``batch_size``
the training; ``skip`` the teacher solver's step (20 on a 1000-step schedule: LCM's 50-step
skipping schedule, LCMScheduler's ``original_inference_steps``); ``ema`` the target network;
``augment`` the shared training-time augmentation (:mod:`strategies.core.augment`), off by
default: the targets come from the teacher's trajectories, and augmented images only start
those trajectories off the data distribution.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from strategies.adapters.base import TrainBatch, first_tensor, get_adapter
from strategies.core import training
from strategies.core.base import Strategy, StrategyError, param
from strategies.distill import training_reason

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel
    from strategies.adapters.diffusion import DiffusionAdapter
    from strategies.core.training import Trained

#: LCMScheduler's boundary-condition time scale (its default; the LCM paper's value).
TIMESTEP_SCALING = 10.0
#: Prediction types LCMScheduler converts to a clean-image estimate.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: Config fields that only change sampling: left out of the training cache key.
SAMPLING_ONLY = ("steps",)


@dataclass(frozen=True)
class Config(training.TrainingConfig):
    """How the few-step student is trained and sampled."""

    steps: int = param(
        4, "sampling steps of the student (consistency multistep sampler)", low=1, high=8
    )
    train_steps: int = param(
        2000,
        "training steps (0: the teacher's weights under the "
        "consistency sampler, an untrained control)",
        low=0,
        high=1_000_000,
        search=False,
    )
    lr: float = training.lr_param(1e-4)
    batch_size: int = training.batch_size_param()
    skip: int = param(
        20,
        "skip interval: the teacher ODE solver's step in training timesteps "
        "(one DDIM step from t to t - skip); must divide the schedule length",
        low=1,
        high=125,
        search=False,
    )
    ema: float = param(
        0.95,
        "EMA decay of the target network (0: the student itself, without gradient)",
        low=0.0,
        high=0.99999,
        search=False,
    )
    guidance: float | None = param(
        None,
        "classifier-free guidance scale folded into the "
        "student (default: the model's guidance_scale)",
        low=1.0,
        high=30.0,
        search=False,  # folded in by training: each value is a new training
    )
    loss: str = param(
        "huber",
        "consistency distance: pseudo-Huber or squared error",
        choices=("huber", "l2"),
        search=False,
    )
    huber_c: float = param(
        0.001,
        "pseudo-Huber constant c: sqrt(d^2 + c^2) - c per pixel",
        low=1e-6,
        high=1.0,
        search=False,
    )
    augment: str = training.augment_param("none")
    seed: int = training.seed_param("seed of the data order, timesteps, noise and augmentation")

    always_show = ("steps",)


class ConsistencyTask:
    """Turns training data into consistency-distillation batches (the role an adapter's
    ``make_batch`` plays for the other training strategies), and computes the loss.

    Args:
        adapter: the diffusion adapter of the model (prompt embeddings, denoiser calls).
        scheduler: the LCMScheduler the student will sample with (its noise schedule,
            prediction type and boundary scalings are used in training too).
        skip: the teacher solver's step in training timesteps.
        guidance: the classifier-free guidance scale of the teacher's step.
    """

    def __init__(
        self, adapter: DiffusionAdapter, scheduler: Any, skip: int, guidance: float
    ) -> None:
        self.adapter = adapter
        self.scheduler = scheduler
        self.skip = int(skip)
        self.guidance = float(guidance)
        total = int(scheduler.config.num_train_timesteps)
        if total % self.skip:
            raise StrategyError(
                f"skip={self.skip} does not divide the schedule's {total} training timesteps"
            )
        #: The LCM schedule: t = n * skip - 1 for n = 1 .. total / skip.
        self.timesteps = torch.arange(1, total // self.skip + 1) * self.skip - 1
        self.alphas_cumprod = scheduler.alphas_cumprod.float()
        self.prediction = scheduler.config.prediction_type

    # -- batches ---------------------------------------------------------------------------
    def make_batch(
        self, images: torch.Tensor, prompts: list[str], generator: torch.Generator
    ) -> TrainBatch:
        """Clean images in [-1, 1], noise, the timestep pair (t, s) and prompt embeddings."""
        device = self.adapter.model.device
        n = images.shape[0]
        x0 = (images.float() * 2.0 - 1.0).to(device)
        index = torch.randint(0, len(self.timesteps), (n,), generator=generator)
        t = self.timesteps[index]
        s = (t - self.skip).clamp(min=0)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        extra = {
            "noise": noise,
            "t": t.to(device),
            "s": s.to(device),
            "cond": self.adapter.encode_prompts(list(prompts)),
        }
        if self.guidance != 1.0:
            extra["uncond"] = self.adapter.encode_prompts([""] * n)
        return TrainBatch(inputs={}, target=x0, extra=extra)

    # -- the schedule's algebra -------------------------------------------------------------
    def _alpha_sigma(
        self, t: torch.Tensor, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod.to(like.device)[t].view(-1, *([1] * (like.dim() - 1)))
        return a.sqrt(), (1 - a).sqrt()

    def x0_and_eps(
        self, output: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean-image and noise estimates of a denoiser ``output`` at ``(x, t)``."""
        alpha, sigma = self._alpha_sigma(t, x)
        if self.prediction == "v_prediction":
            return alpha * x - sigma * output, sigma * x + alpha * output
        if self.prediction == "sample":
            return output, (x - alpha * output) / sigma
        return (x - sigma * output) / alpha, output

    def consistency(self, output: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``c_skip(t) x + c_out(t) x0_pred``: LCMScheduler's boundary-conditioned output."""
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition_discrete(t.float())
        shape = (-1, *([1] * (x.dim() - 1)))
        x0, _ = self.x0_and_eps(output, x, t)
        return c_skip.view(shape) * x + c_out.view(shape) * x0

    def predict(
        self, module: nn.Module, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor
    ) -> torch.Tensor:
        """One denoiser call through the adapter's call convention."""
        return first_tensor(module(**self.adapter.denoiser_inputs(x, t, embeds))).float()

    def teacher_step(
        self, teacher: nn.Module, x_t: torch.Tensor, batch: TrainBatch
    ) -> torch.Tensor:
        """The teacher's guided DDIM step from ``t`` to ``s`` (no gradient)."""
        t, s, cond = batch.extra["t"], batch.extra["s"], batch.extra["cond"]
        with torch.no_grad():
            if self.guidance == 1.0:
                guided = self.predict(teacher, x_t, t, cond)
            else:
                both = self.predict(
                    teacher,
                    torch.cat([x_t, x_t]),
                    torch.cat([t, t]),
                    torch.cat([batch.extra["uncond"], cond]),
                )
                uncond, conditional = both.chunk(2)
                guided = uncond + self.guidance * (conditional - uncond)
            x0, eps = self.x0_and_eps(guided, x_t, t)
            alpha_s, sigma_s = self._alpha_sigma(s, x_t)
            return alpha_s * x0 + sigma_s * eps

    def loss(
        self,
        student: nn.Module,
        teacher: nn.Module,
        target_net: nn.Module,
        batch: TrainBatch,
        kind: str,
        huber_c: float,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The consistency-distillation loss of one batch and its named terms."""
        x0, noise, t, s = batch.target, batch.extra["noise"], batch.extra["t"], batch.extra["s"]
        cond = batch.extra["cond"]
        x_t = self.scheduler.add_noise(x0, noise, t)
        pred = self.consistency(self.predict(student, x_t, t, cond), x_t, t)
        x_s = self.teacher_step(teacher, x_t, batch)
        with torch.no_grad():
            target = self.consistency(self.predict(target_net, x_s, s, cond), x_s, s)
        diff = pred - target
        if kind == "huber":
            loss = (torch.sqrt(diff.pow(2) + huber_c**2) - huber_c).mean()
        else:
            loss = diff.pow(2).mean()
        terms = {"mse": float(diff.detach().pow(2).mean())}
        return loss, terms


def lcm_scheduler(pipe_scheduler: Any, skip: int) -> Any:
    """diffusers' LCMScheduler on the pipeline scheduler's noise schedule, with the LCM
    schedule of step ``skip`` (``original_inference_steps = T / skip``)."""
    from diffusers import LCMScheduler

    total = int(pipe_scheduler.config.num_train_timesteps)
    return LCMScheduler.from_config(
        pipe_scheduler.config,
        original_inference_steps=total // int(skip),
        timestep_scaling=TIMESTEP_SCALING,
        clip_sample=False,
        thresholding=False,
    )


def resolved_guidance(model: ReferenceModel, config: Config) -> float:
    """The guidance scale folded into the student: ``config.guidance`` or the model's."""
    if config.guidance is not None:
        return float(config.guidance)
    return max(1.0, float(model.call_args.get("guidance_scale", 1.0) or 1.0))


def train_consistency(model: ReferenceModel, config: Config, use_cache: bool = True) -> Trained:
    """The consistency-distilled denoiser of ``model``: from the cache, or trained now."""
    adapter = get_adapter(model)
    teacher = adapter.module()
    guidance = resolved_guidance(model, config)
    scheduler = lcm_scheduler(model.pipe.scheduler, config.skip)
    task = ConsistencyTask(adapter, scheduler, config.skip, guidance)
    augment = training.augment_config(config.augment)

    def build() -> nn.Module:
        student = copy.deepcopy(teacher)
        student.requires_grad_(True)
        return student

    def train(student: nn.Module) -> dict[str, Any]:
        torch.manual_seed(config.seed)
        target_net = copy.deepcopy(student).requires_grad_(False).eval()
        teacher_mode = teacher.training
        teacher.eval()
        pairs = list(zip(target_net.parameters(), student.parameters(), strict=True))

        def update_target(_step: int) -> None:
            with torch.no_grad():
                for tgt, src in pairs:
                    tgt.lerp_(src.detach(), 1.0 - config.ema)

        def step_loss(batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
            return task.loss(student, teacher, target_net, batch, config.loss, config.huber_c)

        try:
            result = training.fit(
                student,
                step_loss,
                training.training_batches(model, task, config.batch_size, config.seed, augment),  # type: ignore[arg-type]
                steps=config.train_steps,
                lr=config.lr,
                desc=f"consistency skip={config.skip} w={guidance:g}",
                after_step=update_target,
            )
        finally:
            teacher.train(teacher_mode)
        return training.student_meta(result, student)

    return training.train_or_load(
        strategy="consistency",
        model=model,
        config=cache_config(model, config),
        build=build,
        train=train,
        load=adapter.load_state,
        use_cache=use_cache,
    )


def cache_config(model: ReferenceModel, config: Config) -> dict[str, Any]:
    """The settings that determine the trained weights (the sampling ``steps`` do not)."""
    values = {k: v for k, v in config.as_dict().items() if k not in SAMPLING_ONLY}
    values["guidance"] = resolved_guidance(model, config)
    values["augment"] = training.augment_config(config.augment).spec
    return values


class Consistency(training.TrainingStrategy):
    """Distil the denoiser into a few-step consistency model and sample it with LCMScheduler."""

    name = "consistency"
    summary = (
        "few-step student by latent consistency distillation (guidance folded in, "
        "no CFG at sampling), sampled with LCMScheduler in steps=4"
    )
    Config = Config

    def supports(self, model: ReferenceModel) -> str | None:
        if getattr(model, "random_weights", False):
            return (
                f"{model.name} has random weights (an architecture model): its trajectories "
                "mean nothing, so a consistency student cannot be distilled meaningfully"
            )
        reason = training_reason(model)
        if reason:
            return reason
        if "num_inference_steps" not in model.call_args:
            return f"{model.name} ({model.kind}) has no denoising step count"
        config = model.pipe.scheduler.config
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in PREDICTION_TYPES:
            return f"LCMScheduler cannot sample a {prediction!r}-predicting denoiser"
        total = int(config.get("num_train_timesteps", 1000))
        if total % self.config.skip:
            return (
                f"skip={self.config.skip} does not divide the noise schedule's {total} "
                "training timesteps"
            )
        if total // self.config.skip < self.config.steps:
            return (
                f"skip={self.config.skip} leaves {total // self.config.skip} timesteps in the "
                f"consistency schedule, fewer than steps={self.config.steps}"
            )
        return super().supports(model)

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.trains:
            return (
                "consistency distillation trains the denoiser for its own sampler; another "
                "training strategy would retrain it with a different objective"
            )
        if other.exclusive_group in ("step count", "scheduler"):
            return "consistency sets the sampler (LCMScheduler) and its step count (steps=)"
        return None

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        cfg = self.config
        adapter = get_adapter(model)
        teacher_steps = model.steps
        teacher_guidance = float(model.call_args.get("guidance_scale", 1.0) or 1.0)
        guidance = resolved_guidance(model, cfg)
        trained = train_consistency(model, cfg)
        scheduler = lcm_scheduler(model.pipe.scheduler, cfg.skip)
        adapter.set_module(trained.module)
        model.pipe.scheduler = scheduler
        model.call_args["num_inference_steps"] = cfg.steps
        model.call_args["guidance_scale"] = 1.0  # folded into the student: one call per step
        scheduler.set_timesteps(cfg.steps)
        timesteps = [int(t) for t in scheduler.timesteps]
        meta = trained.meta
        model.notes[self.name] = {
            "steps": cfg.steps,
            "teacher_steps": teacher_steps,
            "sampler": "LCMScheduler",
            "timesteps": timesteps,
            "skip": cfg.skip,
            "original_inference_steps": scheduler.config.original_inference_steps,
            "guidance_folded": guidance,
            "teacher_guidance": teacher_guidance,
            "denoiser_calls_per_image": cfg.steps,
            "teacher_calls_per_image": (teacher_steps or 0) * (2 if teacher_guidance > 1 else 1),
            "training": training.training_notes(
                trained, augment=meta.get("config", {}).get("augment")
            ),
            "loss_history": meta.get("history"),
        }
        training.record_trained(model, trained)
        return model
