"""A faster solver: swap the diffusion scheduler for one that needs fewer steps.

DPM-Solver++ and UniPC reach a given quality in far fewer steps than DDIM; pair with
``steps`` to cash that in (``scheduler:name=dpm-solver+steps:n=10``).

Two kinds of models are told apart by their scheduler's config:

* noise-prediction models (DDPM family: SD 1.5, SDXL, PixArt, the embedded models) get the
  named diffusers scheduler built from the pipeline scheduler's config, keeping its noise
  schedule (betas, timestep spacing, prediction type);
* flow-matching models (rectified flow: SD3, FLUX, Sana; the scheduler is a ``FlowMatch*``
  one, or predicts ``flow_prediction`` on flow sigmas) get the flow form of the named solver:
  DPM-Solver++, UniPC and DEIS with ``use_flow_sigmas`` and ``prediction_type=
  "flow_prediction"``, Euler as ``FlowMatchEulerDiscreteScheduler`` and Heun as
  ``FlowMatchHeunDiscreteScheduler``, all with the model's shift (and its resolution-
  dependent shift where the pipeline computes one, as FLUX's does). DDIM and PNDM have no
  flow-matching form in diffusers and are refused, as is Heun where the pipeline needs the
  dynamic shift, which ``FlowMatchHeunDiscreteScheduler`` does not take.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from strategies.core.base import Strategy, StrategyConfig, param

#: Scheduler names -> (diffusers class name, extra config) for noise-prediction models.
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

#: Scheduler names -> (diffusers class name, extra config) for flow-matching models; the
#: multistep solvers also get the flow settings (:func:`flow_settings`). Names missing here
#: have no flow-matching form.
FLOW_SCHEDULERS: dict[str, tuple[str, dict]] = {
    "dpm-solver": SCHEDULERS["dpm-solver"],
    "dpm-solver-3": SCHEDULERS["dpm-solver-3"],
    "unipc": SCHEDULERS["unipc"],
    "deis": SCHEDULERS["deis"],
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "heun": ("FlowMatchHeunDiscreteScheduler", {}),
}


@dataclass(frozen=True)
class Config(StrategyConfig):
    """Which diffusers scheduler to sample with."""

    name: str = param("dpm-solver", "scheduler", choices=tuple(SCHEDULERS))

    always_show = ("name",)


def is_flow_matching(scheduler: Any) -> bool:
    """True when ``scheduler`` samples a flow-matching (rectified-flow) model: a diffusers
    ``FlowMatch*`` scheduler, or one predicting ``flow_prediction`` on flow sigmas."""
    config = scheduler.config
    return (
        type(scheduler).__name__.startswith("FlowMatch")
        or str(config.get("_class_name", "")).startswith("FlowMatch")
        or config.get("prediction_type") == "flow_prediction"
        or bool(config.get("use_flow_sigmas", False))
    )


def flow_shift(config: Any) -> float:
    """The timestep shift of a flow-matching scheduler config (``shift`` or ``flow_shift``)."""
    value = config.get("shift", config.get("flow_shift", 1.0))
    return float(value if value is not None else 1.0)


def flow_settings(config: Any, class_name: str) -> dict[str, Any]:
    """Config entries that put diffusers scheduler ``class_name`` on the flow-matching
    schedule of ``config`` (the model's shift, dynamic shifting where it has it)."""
    shift = flow_shift(config)
    dynamic = bool(config.get("use_dynamic_shifting", False))
    if class_name.startswith("FlowMatch"):
        out: dict[str, Any] = {"shift": shift}
        if class_name == "FlowMatchEulerDiscreteScheduler" and dynamic:
            out.update(
                {
                    k: config[k]
                    for k in ("use_dynamic_shifting", "base_shift", "max_shift",
                              "base_image_seq_len", "max_image_seq_len", "time_shift_type")
                    if k in config
                }
            )
        return out
    out = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": shift}
    if dynamic:
        out["use_dynamic_shifting"] = True
        out["time_shift_type"] = config.get("time_shift_type", "exponential")
    return out


def flow_reason(name: str, config: Any) -> str | None:
    """Why scheduler ``name`` cannot sample a flow-matching model with ``config``, or None."""
    if name not in FLOW_SCHEDULERS:
        usable = ", ".join(FLOW_SCHEDULERS)
        return (
            f"{SCHEDULERS[name][0]} has no flow-matching form in diffusers: this model predicts "
            "a velocity on a rectified-flow schedule, which a noise-prediction sampler cannot "
            f"integrate (use one of {usable})"
        )
    if name == "heun" and config.get("use_dynamic_shifting", False):
        return (
            "FlowMatchHeunDiscreteScheduler takes no resolution-dependent shift (mu), which "
            "this model's pipeline computes for every call (use euler, dpm-solver or unipc)"
        )
    return None


def own_sigmas_reason(pipe: Any, name: str) -> str | None:
    """Why ``pipe`` cannot sample with flow-matching scheduler ``name`` because it hands the
    scheduler its own sigma schedule, which only a ``FlowMatch*`` solver taking ``sigmas`` is
    built for, or None.

    FLUX's pipelines compute default sigmas and drop them for a solver on flow sigmas;
    Qwen-Image's and Z-Image's always pass theirs (DPM-Solver++'s and DEIS's
    ``set_timesteps`` take none; UniPC's fails on Z-Image's list). diffusers has no flag for
    this, so the pipeline's ``__call__`` is read: it sets ``sigmas = ...`` and never checks
    ``use_flow_sigmas``."""
    import re

    import diffusers

    class_name = FLOW_SCHEDULERS[name][0]
    takes = inspect.signature(getattr(diffusers, class_name).set_timesteps).parameters
    if class_name.startswith("FlowMatch") and "sigmas" in takes:
        return None
    try:
        source = inspect.getsource(type(pipe).__call__)
    except (OSError, TypeError):
        return None
    if re.search(r"\n\s*sigmas = \S", source) and "use_flow_sigmas" not in source:
        return (f"{type(pipe).__name__} passes its own sigma schedule to the scheduler on every "
                f"call, which {class_name} is not built to take (use euler)")
    return None


def build_scheduler(name: str, scheduler: Any) -> Any:
    """The diffusers scheduler ``name`` in place of the pipeline's ``scheduler``."""
    import diffusers

    config = scheduler.config
    flow = is_flow_matching(scheduler)
    class_name, extra = (FLOW_SCHEDULERS if flow else SCHEDULERS)[name]
    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    # Only the entries the new class takes (no "not expected, will be ignored" warnings).
    base = {k: v for k, v in config.items() if k in accepted and not k.startswith("_")}
    if flow:
        base = {k: v for k, v in base.items() if k in ("num_train_timesteps",)}
        base.update(flow_settings(config, class_name))
    return cls.from_config({**base, **extra})


class Scheduler(Strategy):
    """Replace the pipeline's scheduler: the same noise schedule (betas, timesteps) for
    noise-prediction models, the same flow schedule (shift) for flow-matching ones."""

    name = "scheduler"
    summary = "swap the sampler for a faster solver (name=dpm-solver by default; unipc, euler...)"
    Config = Config
    stage = Strategy.STAGE_SAMPLING
    exclusive_group = "scheduler"
    screen_with = ("steps",)  # a solver's worth is quality at fewer steps

    def supports(self, model) -> str | None:
        if model.pipe is None or not hasattr(model.pipe, "scheduler"):
            return f"{model.name} ({model.kind}) has no diffusion scheduler"
        scheduler = model.pipe.scheduler
        if is_flow_matching(scheduler):
            reason = flow_reason(self.config.name, scheduler.config)
            if self.config.name in FLOW_SCHEDULERS:
                reason = own_sigmas_reason(model.pipe, self.config.name) or reason
            if reason:
                return f"{model.name} is a flow-matching model: {reason}"
        return super().supports(model)

    def apply(self, model):
        old = model.pipe.scheduler
        model.pipe.scheduler = build_scheduler(self.config.name, old)
        model.notes["scheduler"] = {
            "name": self.config.name,
            "class": type(model.pipe.scheduler).__name__,
            "flow_matching": is_flow_matching(old),
        }
        return model
