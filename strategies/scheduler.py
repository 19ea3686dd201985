"""A faster solver: swap the diffusion scheduler for one that needs fewer steps.

DPM-Solver++ and UniPC reach a given quality in far fewer steps than DDIM; pair with
``steps`` to cash that in (``scheduler:name=dpm-solver+steps:n=10``).
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import Strategy, StrategyConfig, param

#: Scheduler names -> (diffusers class name, extra config).
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpm-solver": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    "dpm-solver-3": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 3},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
}


@dataclass(frozen=True)
class Config(StrategyConfig):
    """Which diffusers scheduler to sample with."""

    name: str = param("dpm-solver", "scheduler", choices=tuple(SCHEDULERS))

    always_show = ("name",)


class Scheduler(Strategy):
    """Replace the pipeline's scheduler, keeping its noise schedule (betas, timesteps)."""

    name = "scheduler"
    summary = "swap the sampler for a faster solver (name=dpm-solver by default; unipc, euler...)"
    Config = Config
    stage = Strategy.STAGE_SAMPLING
    exclusive_group = "scheduler"

    def supports(self, model) -> str | None:
        if model.pipe is None or not hasattr(model.pipe, "scheduler"):
            return f"{model.name} ({model.kind}) has no diffusion scheduler"
        return super().supports(model)

    def apply(self, model):
        import diffusers

        class_name, extra = SCHEDULERS[self.config.name]
        cls = getattr(diffusers, class_name)
        model.pipe.scheduler = cls.from_config(model.pipe.scheduler.config, **extra)
        return model
