"""Fusion of teacher and distilled student at sampling time.

The article's last distillation step combines the source (teacher) and target (student)
models: ``Fusion = W * teacher + (1 - W) * student``. Two ways of doing that at sampling time,
each tracing a speed/quality curve with one parameter:

* ``split`` (trajectory stitching, T-Stitch, Pan et al. 2024): the student denoises the first
  ``split`` fraction of the steps, the teacher the rest. The student takes the *first* (high
  noise) steps because early steps only settle the coarse layout, where a small model's
  prediction agrees closely with the large one's, while the last steps add the detail that
  needs the teacher's capacity; T-Stitch measured that order to keep quality far better than
  the reverse. ``split=0`` is the teacher, ``split=1`` the student; time falls linearly.
* ``weight``: every step runs both and blends their predictions,
  ``(1 - weight) * teacher + weight * student``. ``weight=0`` runs only the teacher and
  ``weight=1`` only the student (bit-exact); in between a step costs teacher + student, so
  the blend is *slower* than the teacher alone: it buys quality over the student, not speed.

The student is the one :mod:`strategies.distill` trains, with the same parameters and the same
cache: ``fusion`` after ``distill`` with equal settings trains nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from strategies import distill
from strategies.adapters.base import get_adapter
from strategies.core.base import Strategy, StrategyError, param
from strategies.core.training import record_trained

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel


@dataclass(frozen=True)
class Config(distill.Config):
    """Which fusion, and how to train the student (the distill parameters)."""

    split: float | None = param(
        None, "fraction of the steps (the first, high-noise ones) run by the student; "
        "default 0.5 when neither split nor weight is given", low=0.0, high=1.0,
    )
    weight: float | None = param(
        None, "blend every step: (1 - weight) * teacher + weight * student", low=0.0, high=1.0
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split is not None and self.weight is not None:
            raise StrategyError("give split (trajectory stitching) or weight (blend), not both")

    @property
    def mode(self) -> tuple[str, float]:
        """("split", fraction) or ("weight", w); a bare ``fusion`` is split=0.5."""
        if self.weight is not None:
            return "weight", float(self.weight)
        return "split", 0.5 if self.split is None else float(self.split)

    def distill_config(self) -> distill.Config:
        """The student's training settings, as :mod:`strategies.distill` takes them."""
        names = {f.name for f in fields(distill.Config)}
        return distill.Config(**{k: v for k, v in self.as_dict().items() if k in names})


class FusedDenoiser(nn.Module):
    """Stands in for a diffusers denoiser and runs the teacher, the student, or both.

    Args:
        teacher, student: denoisers with the same call signature and output shape.
        split: the student runs the first ``round(split * n)`` of the ``n`` steps.
        weight: blend ``(1 - weight) * teacher + weight * student`` at every step.
        pipe: the pipeline this module sits in; its scheduler's ``timesteps`` (set for each
            generation, whatever the scheduler or step count) tell which step a timestep
            is. Without it, the timestep value decides: the student runs while
            ``t >= (1 - split) * num_train_timesteps``.

    Exactly one of ``split`` and ``weight`` is given.
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        *,
        split: float | None = None,
        weight: float | None = None,
        pipe: Any = None,
    ) -> None:
        super().__init__()
        if (split is None) == (weight is None):
            raise ValueError("give exactly one of split and weight")
        for name, value in (("split", split), ("weight", weight)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.teacher = teacher
        self.student = student
        self.split = split
        self.weight = weight
        # A plain attribute (not a submodule): the pipeline that owns this module. Deep
        # copies of the pipeline copy this reference along with it.
        self.__dict__["_pipe"] = pipe
        #: Calls made to each model since the last reset (for checks and notes).
        self.calls = {"teacher": 0, "student": 0}

    # -- what pipelines read from their denoiser ------------------------------------------
    @property
    def config(self) -> Any:
        return self.teacher.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.teacher.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.teacher.parameters()).device

    # -- the step ------------------------------------------------------------------------
    def student_steps(self, n: int) -> int:
        """How many of ``n`` steps the student runs in split mode."""
        assert self.split is not None
        return int(math.floor(self.split * n + 0.5))

    def _use_student(self, timestep: Any) -> bool:
        assert self.split is not None
        if self.split <= 0.0:
            return False
        if self.split >= 1.0:
            return True
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        scheduler = getattr(self._pipe, "scheduler", None)
        timesteps = getattr(scheduler, "timesteps", None)
        if isinstance(timesteps, torch.Tensor) and timesteps.numel():
            hits = torch.nonzero((timesteps.float().cpu() - t).abs() < 1e-4).flatten()
            if hits.numel():
                return int(hits[0]) < self.student_steps(len(timesteps))
        total = 1000
        if scheduler is not None:
            total = int(scheduler.config.get("num_train_timesteps", total))
        return t >= (1.0 - self.split) * total

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.weight is not None:
            if self.weight == 0.0:
                return self._call("teacher", *args, **kwargs)
            if self.weight == 1.0:
                return self._call("student", *args, **kwargs)
            t_out = self._call("teacher", *args, **kwargs)
            s_out = self._call("student", *args, **kwargs)
            return _blend(t_out, s_out, self.weight)
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if timestep is None:
            raise TypeError("FusedDenoiser needs the timestep (second argument or timestep=)")
        return self._call("student" if self._use_student(timestep) else "teacher", *args, **kwargs)

    def _call(self, which: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[which] += 1
        return getattr(self, which)(*args, **kwargs)


def _blend(teacher_out: Any, student_out: Any, weight: float) -> Any:
    """``(1 - weight) * teacher + weight * student`` on a tensor, tuple or output object."""
    if isinstance(teacher_out, torch.Tensor):
        return (1.0 - weight) * teacher_out + weight * student_out
    if isinstance(teacher_out, tuple):
        return (_blend(teacher_out[0], student_out[0], weight), *teacher_out[1:])
    if hasattr(teacher_out, "sample"):
        teacher_out.sample = _blend(teacher_out.sample, student_out.sample, weight)
        return teacher_out
    raise TypeError(f"cannot blend outputs of type {type(teacher_out).__name__}")


class Fusion(Strategy):
    """Run teacher and distilled student together: stitched trajectory or blended steps."""

    name = "fusion"
    summary = ("teacher + distilled student at sampling time: student for the first split of "
               "the steps (split=0.5), or a weighted blend (weight=)")
    Config = Config
    stage = Strategy.STAGE_ARCHITECTURE
    trains = True
    adds_networks = True

    def added_weight_bytes(self, model) -> int:
        """The student beside the (shared) teacher: at most the denoiser's bytes again."""
        from bench.models.sharing import weight_bytes  # lazy: bench.models' init loads its registry

        return weight_bytes([model.components()["denoiser"]])

    def supports(self, model: ReferenceModel) -> str | None:
        reason = distill.random_weights_reason(
            model, "distilled meaningfully (fusion trains a student)"
        )
        return reason or distill.Distill(self.config.distill_config()).supports(model)

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.name == "distill":
            return "fusion already trains and runs the distilled student (with the teacher)"
        if other.name == "prune-structured":
            return "the fused denoiser holds two models; prune before fusing is not supported"
        return None

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        adapter = get_adapter(model)
        teacher = adapter.module()
        student_config = self.config.distill_config()
        trained, info = distill.train_student(model, student_config)
        notes = distill.student_notes(model, teacher, trained, info, student_config)
        mode, value = self.config.mode
        fused = adapter.fuse(
            teacher,
            trained.module,
            split=value if mode == "split" else None,
            weight=value if mode == "weight" else None,
        )
        steps = model.steps
        if mode == "split":
            described = "student for the first (high-noise) steps, teacher for the rest"
            if steps and isinstance(fused, FusedDenoiser):
                described += f": {fused.student_steps(steps)} of {steps} steps by the student"
        else:
            described = f"every step: {1 - value:g} x teacher + {value:g} x student"
        model.notes[self.name] = {"mode": mode, "value": value, "schedule": described, **notes}
        adapter.set_module(fused)
        record_trained(model, trained)
        return model
