"""Unstructured magnitude pruning: zero the smallest weights, made permanent.

The article's "parameter filtering" (参数过滤: keep the parameters that matter most): the
``amount`` fraction of the weights with the smallest magnitude in the denoiser's Conv and
Linear layers is set to zero with ``torch.nn.utils.prune`` (``l1_unstructured`` per layer, or
``global_unstructured`` across all of them), and the pruning is made permanent
(``prune.remove``: the zeros are written into the weights, no masks or hooks remain).

The tensors keep their shape and dense layout, and PyTorch's dense kernels multiply the zeros
like any other number, so this buys **no speed** (nor memory) by itself: it only shows the
quality cost of a given sparsity. Speed needs sparse kernels (e.g. 2:4 semi-structured on
Ampere+) or removing whole channels (:mod:`strategies.prune_structured`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strategies.core.base import Strategy, StrategyConfig, param

if TYPE_CHECKING:
    from torch import nn

    from bench.models.base import ReferenceModel


@dataclass(frozen=True)
class Config(StrategyConfig):
    """How many weights to zero and over which scope."""

    amount: float = param(0.5, "fraction of the weights set to zero", low=0.0, high=0.99)
    scope: str = param("layer", "rank weights within each layer, or across all layers (global)",
                       choices=("layer", "global"))

    always_show = ("amount",)


def prunable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every Conv and Linear layer with a floating-point weight."""
    import torch
    from torch import nn

    out = []
    for name, sub in module.named_modules():
        weight = getattr(sub, "weight", None)
        if (
            isinstance(sub, (nn.Linear, nn.modules.conv._ConvNd))
            and type(weight) in (torch.Tensor, nn.Parameter)
            and weight.is_floating_point()
        ):
            out.append((name, sub))
    return out


def sparsity(module: nn.Module) -> dict[str, Any]:
    """Zero fraction of the prunable weights: overall, and per layer kind."""
    from torch import nn

    zeros = total = 0
    by_kind: dict[str, list[int]] = {"linear": [0, 0], "conv": [0, 0]}
    for _, layer in prunable_layers(module):
        w = layer.weight.detach()
        z, n = int((w == 0).sum()), w.numel()
        kind = "linear" if isinstance(layer, nn.Linear) else "conv"
        by_kind[kind][0] += z
        by_kind[kind][1] += n
        zeros += z
        total += n
    return {
        "overall": zeros / total if total else 0.0,
        "zeros": zeros,
        "weights": total,
        **{k: (v[0] / v[1] if v[1] else None) for k, v in by_kind.items()},
    }


class MagnitudePrune(Strategy):
    """Zero the smallest-magnitude weights (unstructured); shows quality cost, not speed."""

    name = "prune-magnitude"
    summary = ("zero the smallest weights (amount=0.5) of Conv/Linear layers; no speedup on "
               "dense kernels")
    Config = Config
    stage = Strategy.STAGE_WEIGHTS
    rewrites = ("denoiser",)

    def supports(self, model: ReferenceModel) -> str | None:
        denoiser = model.components().get("denoiser")
        if denoiser is None or not prunable_layers(denoiser):
            return "the denoiser has no floating-point Conv or Linear weight to prune"
        return super().supports(model)

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        import torch
        from torch.nn.utils import prune

        denoiser = model.components()["denoiser"]
        layers = prunable_layers(denoiser)
        before = sparsity(denoiser)
        amount = self.config.amount
        with torch.no_grad():
            if self.config.scope == "global":
                prune.global_unstructured(
                    [(layer, "weight") for _, layer in layers],
                    pruning_method=prune.L1Unstructured,
                    amount=amount,
                )
            else:
                for _, layer in layers:
                    prune.l1_unstructured(layer, "weight", amount=amount)
            for _, layer in layers:
                prune.remove(layer, "weight")  # permanent: zeros in the weight, no mask
        after = sparsity(denoiser)
        model.notes[self.name] = {
            "amount": amount,
            "scope": self.config.scope,
            "layers": len(layers),
            "sparsity_before": before["overall"],
            "sparsity_after": after["overall"],
            "sparsity_linear": after["linear"],
            "sparsity_conv": after["conv"],
            "weights_zeroed": after["zeros"] - before["zeros"],
            "note": "dense tensors and kernels: the zeros are still stored and multiplied, "
                    "so no speedup or memory saving is expected",
        }
        return model
