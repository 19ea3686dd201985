"""Structural pruning: remove whole channels (and attention head dimensions), then recover.

The article's "structural pruning" (删除对图像生成影响较小的神经元和连接): channels judged
least important are cut out of the denoiser, so its convolutions and matmuls really get
smaller and faster (unlike :mod:`strategies.prune_magnitude`). torch-pruning's dependency
graph keeps everything that shares a channel consistent (skip connections, residual sums,
GroupNorm groups, the heads of attention); what the model kind needs beyond that (the layers
that must keep their outputs, how attention is treated, attributes to fix afterwards) comes
from the model's adapter. This is Diff-Pruning's recipe (Fang et al. 2023) with its
importance criteria:

* ``magnitude``: L2 norm of each channel's weights (group-summed);
* ``taylor``: first-order Taylor estimate ``|w * dL/dw|`` from the task loss on a few
  training batches;
* ``random``: a control.

``ratio`` is the fraction of channels removed from every prunable group (0.5 removes about
three quarters of the parameters: both sides of each weight shrink). An optional recovery
fine-tune (``steps``) retrains the pruned model on its training data with the task loss
(augmented, ``augment``); its weights are cached like every training strategy's.

Random-weight architecture models (``arch:``) have no training data: recovery and the Taylor
criterion are refused on them with the reason; ``steps=0`` with the magnitude (or random)
criterion prunes without training, which is what their latency and memory measure.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from strategies import distill
from strategies.adapters.base import adapter_reason, get_adapter
from strategies.core.augment import AugmentConfig
from strategies.core.base import Strategy, StrategyError, param
from strategies.core.training import (
    TrainingConfig,
    TrainingStrategy,
    augment_config,
    augment_param,
    batch_size_param,
    fit,
    lr_param,
    record_cold,
    seed_param,
    train_or_load,
    training_batches,
)

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel
    from strategies.adapters.base import ModelAdapter

IMPORTANCE = ("magnitude", "taylor", "random")


@dataclass(frozen=True)
class Config(TrainingConfig):
    """How much to prune, by which criterion, and how long to recover."""

    ratio: float = param(
        0.5, "fraction of the channels removed from each group", low=0.05, high=0.95
    )
    importance: str = param("magnitude", "channel importance criterion", choices=IMPORTANCE)
    attention: str = param(
        "heads",
        "attention: prune head dimensions alike in every head "
        "(heads) or leave q/k/v whole (ignore)",
        choices=("heads", "ignore"),
    )
    steps: int = param(
        300, "recovery fine-tuning steps (0: none)", low=0, high=1_000_000, search=False
    )
    lr: float = lr_param(5e-4, "recovery learning rate (AdamW)")
    batch_size: int = batch_size_param("recovery batch size")
    augment: str = augment_param(
        distill.DEFAULT_AUGMENT,
        "data augmentation during recovery: none, all, or crop/color/noise joined with '/'",
    )
    seed: int = seed_param("seed of the Taylor batches, data order, noise and augmentation")

    always_show = ("ratio",)


def _importance(name: str) -> Any:
    import torch_pruning as tp  # optional dependency (the prune extra)

    if name == "magnitude":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    if name == "random":
        return tp.importance.RandomImportance()
    raise StrategyError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCE)}")


def prune_module(
    model: ReferenceModel, adapter: ModelAdapter, module: nn.Module, config: Config
) -> dict[str, Any]:
    """Prune ``module`` in place with torch-pruning; returns what was done (for the notes)."""
    import torch_pruning as tp  # optional dependency (the prune extra)

    setup = adapter.prune_setup(module, config.attention)
    torch.manual_seed(config.seed)
    module.eval()
    # torch-pruning finds what shares a channel by tracing the autograd graph, which a module
    # whose parameters do not require gradients (frozen, e.g. by a loader) does not build:
    # nothing would be pruned. ``module`` is the strategy's own copy.
    module.requires_grad_(True)
    if config.importance == "taylor":
        # Gradients of the task loss on a few training batches feed the Taylor criterion.
        module.zero_grad(set_to_none=True)
        batches = training_batches(model, adapter, config.batch_size, config.seed, AugmentConfig())
        for _ in range(4):
            batch = next(batches)
            adapter.task_loss(adapter.forward(module, batch), batch).backward()
    pruner = tp.pruner.BasePruner(
        module,
        setup.example_inputs,
        importance=_importance(config.importance),
        pruning_ratio=config.ratio,
        ignored_layers=setup.ignored_layers,
        num_heads=setup.num_heads,
        prune_num_heads=False,
        prune_head_dims=True,
        unwrapped_parameters=setup.unwrapped_parameters,
    )
    pruner.step()
    module.zero_grad(set_to_none=True)
    adapter.after_prune(module)
    try:
        with torch.no_grad():
            module(**setup.example_inputs)
    except Exception as exc:  # the pruned graph must still run: say where it broke
        raise StrategyError(
            f"the pruned {type(module).__name__} no longer runs ({type(exc).__name__}: {exc})"
        ) from exc
    return setup.notes


def example_inputs_reason(adapter: ModelAdapter) -> str | None:
    """Why the adapter cannot build a real input of the model's denoiser (which tracing the
    dependency graph needs), in words; None when it can. Runs the text encoder once."""
    try:
        adapter.example_inputs(adapter.module(), batch_size=1)
    except Exception as exc:  # noqa: BLE001 - any failure is the reason, in words
        pipe = getattr(adapter.model, "pipe", None)
        return (
            f"the {adapter.kind} adapter cannot build the denoiser's inputs for "
            f"{type(pipe).__name__}: {type(exc).__name__}: {exc}"
        )
    return None


class StructuredPrune(TrainingStrategy):
    """Channel pruning with torch-pruning (GroupNorm-, attention- and skip-aware) + recovery."""

    name = "prune-structured"
    summary = (
        "remove whole channels (torch-pruning; ratio=0.5, importance=magnitude), then "
        "fine-tune to recover (steps=300)"
    )
    Config = Config

    def supports(self, model: ReferenceModel) -> str | None:
        try:
            import torch_pruning  # noqa: F401
        except ImportError:
            return "torch-pruning is not installed (pip install torch-pruning)"
        needs_data = self.config.steps > 0 or self.config.importance == "taylor"
        if needs_data:
            what = (
                "fine-tuned meaningfully to recover from pruning"
                if self.config.steps > 0
                else "ranked meaningfully by Taylor importance (the training loss's gradients)"
            )
            reason = distill.random_weights_reason(model, what)
            if reason:
                return (
                    f"{reason}; prune-structured:steps=0 (importance magnitude or random) "
                    "prunes without training"
                )
            reason = distill.training_reason(model)
        else:
            reason = adapter_reason(model) or get_adapter(model).structure_reason()
            reason = reason or example_inputs_reason(get_adapter(model))
        return reason or super().supports(model)

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.name == "fusion":
            return "the fused denoiser holds two models; prune before fusing is not supported"
        return None

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        cfg = self.config
        adapter = get_adapter(model)
        original = adapter.module()
        macs_before, params_before = adapter.count_macs(original)
        widths = getattr(adapter, "channel_widths", None)
        widths_before = widths(original) if widths else None
        setup_notes: dict[str, Any] = {}
        prune_s: dict[str, float] = {}

        def build() -> nn.Module:
            start = time.perf_counter()
            pruned = copy.deepcopy(original)
            setup_notes.update(prune_module(model, adapter, pruned, cfg))
            prune_s["s"] = time.perf_counter() - start
            return pruned

        augment = augment_config(cfg.augment)

        def recover(pruned: nn.Module) -> dict[str, Any]:
            def step_loss(batch: Any) -> tuple[Any, dict[str, float]]:
                loss = adapter.task_loss(adapter.forward(pruned, batch), batch)
                return loss, {}

            result = fit(
                pruned,
                step_loss,
                training_batches(model, adapter, cfg.batch_size, cfg.seed, augment),
                steps=cfg.steps,
                lr=cfg.lr,
                desc=f"recover prune-structured:{cfg.ratio:g}",
            )
            return {
                "training_s": result.seconds + prune_s.get("s", 0.0),
                "recovery_s": result.seconds,
                "prune_s": prune_s.get("s", 0.0),
                "steps": result.steps,
                "final_loss": result.final,
                "history": result.history,
            }

        if cfg.steps > 0:
            resolved = {**cfg.as_dict(), "augment": augment.spec}
            trained = train_or_load(
                strategy=self.name,
                model=model,
                config=resolved,
                build=build,
                train=recover,
                load=adapter.load_state,
            )
            pruned, meta, hit, key = trained.module, trained.meta, trained.cache_hit, trained.key
        else:
            pruned = build()
            meta = {"training_s": 0.0, "prune_s": prune_s["s"], "steps": 0}
            hit, key = False, None
        macs_after, params_after = adapter.count_macs(pruned)
        model.notes[self.name] = {
            "ratio": cfg.ratio,
            "importance": cfg.importance,
            "params_before": params_before,
            "params_after": params_after,
            "params_ratio": params_after / params_before,
            "macs_before": macs_before,
            "macs_after": macs_after,
            "macs_ratio": macs_after / macs_before,
            "widths_before": widths_before,
            "widths_after": widths(pruned) if widths else None,
            "setup": setup_notes,
            "config_note": "the module's config still lists the unpruned widths",
            "recovery": {
                "steps": meta.get("steps"),
                "augment": augment.spec,
                "training_s": meta.get("training_s"),
                "final_loss": meta.get("final_loss"),
                "cache_hit": hit,
                "cache_key": key,
            },
            "loss_history": meta.get("history"),
        }
        adapter.set_module(pruned)
        if cfg.steps > 0:
            record_cold(model, float(meta.get("training_s", 0.0)), hit)
        return model
