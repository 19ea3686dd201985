"""Knowledge distillation into a block-removed student (BK-SDM, Kim et al. 2023).

The article's "model distillation": a teacher's knowledge moved into a smaller student. As in
BK-SDM, the student is the teacher with whole blocks removed (which ones: ``drop``, decided
per model kind by the adapter; for a UNet ``mid`` and/or ``inner``), initialised from the
teacher's weights, and trained with

    L = L_task + kd_out * MSE(student output, teacher output)
             + kd_feat * sum over matched blocks of MSE(student feature, teacher feature)

on the model's own training data, augmented (``augment``, see :mod:`strategies.core.augment`).
The trained student replaces the teacher. Trained weights are cached (safetensors) under a key
of the teacher's weights, this config and the code version; the training time is reported as a
one-off cost, from which the runner computes the break-even number of images.

Default: 400 steps at batch 32, which takes a few minutes on one CPU thread for
``digits-unet`` (measured figures are in the module's notes and the benchmark script).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from strategies.adapters.base import adapter_reason, first_tensor, get_adapter
from strategies.core.base import Strategy, StrategyError, param
from strategies.core.training import (
    TrainingConfig,
    TrainingStrategy,
    augment_config,
    augment_param,
    batch_size_param,
    count_params,
    fit,
    lr_param,
    record_trained,
    seed_param,
    student_meta,
    train_or_load,
    training_batches,
    training_notes,
)

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel
    from strategies.adapters.base import ModelAdapter, Student
    from strategies.core.training import Trained

DEFAULT_AUGMENT = "crop/color/noise"


@dataclass(frozen=True)
class Config(TrainingConfig):
    """How the student is built and trained."""

    drop: str = param(
        "default",
        "blocks removed from the student, joined with '/' (UNet: mid, inner); "
        "'default' = the model kind's standard student (UNet: inner/mid)",
    )
    steps: int = param(
        400,
        "training steps (0: the untrained, teacher-initialised student)",
        low=0,
        high=1_000_000,
        search=False,
    )
    lr: float = lr_param(5e-4)
    batch_size: int = batch_size_param()
    kd_out: float = param(
        1.0, "weight of the output-level distillation loss", low=0.0, high=1e3, search=False
    )
    kd_feat: float = param(
        1.0, "weight of the feature-level distillation loss", low=0.0, high=1e3, search=False
    )
    augment: str = augment_param(DEFAULT_AUGMENT)
    seed: int = seed_param("seed of the data order, noise and augmentation")


def random_weights_reason(model: ReferenceModel, what: str = "trained meaningfully") -> str | None:
    """Why a strategy that learns from the model cannot apply to a random-weight
    architecture model (``model.random_weights``), in words; None for other models.

    ``what`` says what cannot be done (``"distilled meaningfully"``...).
    """
    if not getattr(model, "random_weights", False):
        return None
    return (
        f"random-weight architecture models cannot be {what}: {model.name} has "
        "random weights and no training data, so a student or a fine-tune would learn from "
        "noise and its cost and quality would say nothing about the real model"
    )


def training_reason(model: ReferenceModel, needs_structure: bool = True) -> str | None:
    """Why a training strategy cannot apply to ``model`` (random weights, no adapter, no
    data...), or None."""
    reason = random_weights_reason(model) or adapter_reason(model)
    if reason:
        return reason
    adapter = get_adapter(model)
    if needs_structure:
        reason = adapter.structure_reason()
        if reason:
            return reason
    return adapter.training_reason()


class _FeatureTap:
    """Forward hooks that keep the outputs of named submodules for one forward pass."""

    def __init__(self, module: nn.Module, names: list[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        modules = dict(module.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise StrategyError(f"feature points not found in the module: {missing}")
        self._handles = []
        for name in names:
            def hook(_mod: Any, _inp: Any, out: Any, name: str = name) -> None:
                self.features[name] = first_tensor(out)

            self._handles.append(modules[name].register_forward_hook(hook))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def distill_loss(
    adapter: ModelAdapter,
    teacher: nn.Module,
    student: nn.Module,
    pairs: list[tuple[str, str]],
    kd_out: float,
    kd_feat: float,
) -> tuple[Callable[[Any], tuple[torch.Tensor, dict[str, float]]], Callable[[], None]]:
    """The BK-SDM loss as a step function for :func:`strategies.core.training.fit`, and a function
    removing its hooks."""
    t_tap = _FeatureTap(teacher, [t for _, t in pairs]) if kd_feat and pairs else None
    s_tap = _FeatureTap(student, [s for s, _ in pairs]) if kd_feat and pairs else None

    def step_loss(batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            t_out = adapter.forward(teacher, batch)
        s_out = adapter.forward(student, batch)
        task = adapter.task_loss(s_out, batch)
        out_kd = F.mse_loss(s_out.float(), t_out.float())
        terms = {"task": float(task.detach()), "kd_out": float(out_kd.detach())}
        loss = task + kd_out * out_kd
        if t_tap is not None and s_tap is not None:
            feat = torch.zeros((), device=s_out.device)
            for s_name, t_name in pairs:
                s_f, t_f = s_tap.features[s_name], t_tap.features[t_name]
                if s_f.shape != t_f.shape:
                    raise StrategyError(
                        f"feature shapes differ at {s_name} ({tuple(s_f.shape)}) and "
                        f"{t_name} ({tuple(t_f.shape)})"
                    )
                feat = feat + F.mse_loss(s_f.float(), t_f.detach().float())
            loss = loss + kd_feat * feat
            terms["kd_feat"] = float(feat.detach())
        return loss, terms

    def remove() -> None:
        for tap in (t_tap, s_tap):
            if tap is not None:
                tap.remove()

    return step_loss, remove


def train_student(
    model: ReferenceModel, config: Config, use_cache: bool = True
) -> tuple[Trained, Student]:
    """The trained student of ``model``'s denoiser: from the cache, or trained now.

    Shared by :class:`Distill` and the fusion strategy, so both use the same student.
    """
    adapter = get_adapter(model)
    teacher = adapter.module()
    drop = adapter.parse_drop(config.drop)
    augment = augment_config(config.augment)
    built: dict[str, Student] = {}

    def build() -> nn.Module:
        built["student"] = adapter.build_student(teacher, drop)
        return built["student"].module

    def train(student: nn.Module) -> dict[str, Any]:
        info = built["student"]
        torch.manual_seed(config.seed)
        teacher_mode = teacher.training
        teacher.eval()
        step_loss, remove = distill_loss(
            adapter, teacher, student, info.feature_pairs, config.kd_out, config.kd_feat
        )
        try:
            result = fit(
                student,
                step_loss,
                training_batches(model, adapter, config.batch_size, config.seed, augment),
                steps=config.steps,
                lr=config.lr,
                desc=f"distill {'/'.join(drop)}",
            )
        finally:
            remove()
            teacher.train(teacher_mode)
        return student_meta(result, student)

    resolved = {**config.as_dict(), "drop": "/".join(drop), "augment": augment.spec}
    trained = train_or_load(
        strategy="distill",
        model=model,
        config=resolved,
        build=build,
        train=train,
        load=adapter.load_state,
        use_cache=use_cache,
    )
    return trained, built["student"]


def student_notes(
    model: ReferenceModel, teacher: nn.Module, trained: Trained, info: Student, config: Config
) -> dict[str, Any]:
    """What the record says about a student: sizes, MACs, what was removed, its training."""
    adapter = get_adapter(model)
    macs_t, params_t = adapter.count_macs(teacher)
    macs_s, params_s = adapter.count_macs(trained.module)
    meta = trained.meta
    return {
        "removed": info.removed,
        "params_teacher": params_t,
        "params_student": params_s,
        "params_ratio": params_s / params_t,
        "macs_teacher": macs_t,
        "macs_student": macs_s,
        "macs_ratio": macs_s / macs_t,
        "initialised_from_teacher": info.initialised / max(1, count_params(trained.module)),
        "feature_pairs": [f"{s}<-{t}" for s, t in info.feature_pairs],
        "augment": augment_config(config.augment).spec,
        "training": training_notes(trained),
        "loss_history": meta.get("history"),
    }


class Distill(TrainingStrategy):
    """Replace the denoiser by a smaller student distilled from it (BK-SDM)."""

    name = "distill"
    summary = "BK-SDM student: blocks removed, trained with task + output + feature KD losses"
    Config = Config

    def supports(self, model: ReferenceModel) -> str | None:
        reason = random_weights_reason(model, "distilled meaningfully") or training_reason(model)
        if reason:
            return reason
        try:
            get_adapter(model).parse_drop(self.config.drop)
        except StrategyError as exc:
            return str(exc)
        return super().supports(model)

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.name == "fusion":
            return "fusion already trains and runs the distilled student (with the teacher)"
        return None

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        adapter = get_adapter(model)
        teacher = adapter.module()
        trained, info = train_student(model, self.config)
        model.notes[self.name] = student_notes(model, teacher, trained, info, self.config)
        adapter.set_module(trained.module)
        record_trained(model, trained)
        return model
