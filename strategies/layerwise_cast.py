"""``layerwise-cast``: store the denoiser's weights in fp8, compute in the model's dtype.

diffusers' layerwise casting (``diffusers.hooks.apply_layerwise_casting``): every leaf layer
of the denoiser keeps its weights in ``storage`` (fp8) and a hook casts the layer up to the
compute dtype just before its forward and back down after it, so the weights take a quarter
(from fp32) or half (from bf16) of their memory and only one layer at a time is held at full
width. The arithmetic is unchanged; the weights lose precision once (the cast to fp8), and
every call pays the casts.

The compute dtype is the model's own when the strategy applies: ``bf16+layerwise-cast`` (or a
model loaded with ``--dtype bf16``, which is how full-size models load on CUDA) stores fp8 and
computes bf16, the combination diffusers documents; on an fp32 model it computes fp32.
Layers diffusers keeps at full width keep their dtype: its default skip pattern (patch and
position embeddings, norms, the output projection) and the layers a model class names as
precision-sensitive (``_skip_layerwise_casting_patterns``: Z-Image's timestep and caption
embedders, whose forward casts its input to the weights' storage dtype), as diffusers'
``ModelMixin.enable_layerwise_casting`` does.

It is a memory strategy: it trades latency (the casts) for weight memory. Its record's
``memory.weights_mb`` and ``memory.peak_mb`` say what it buys, its speedup what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from strategies.core.base import Strategy, StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

#: Storage dtypes the ``storage`` parameter may name.
STORAGE = {"fp8-e4m3": torch.float8_e4m3fn, "fp8-e5m2": torch.float8_e5m2}


@dataclass(frozen=True)
class LayerwiseCastConfig(StrategyConfig):
    """The storage dtype (the compute dtype is the model's)."""

    storage: str = param("fp8-e4m3", "dtype the weights are stored in between uses",
                         choices=tuple(STORAGE))


class LayerwiseCast(Strategy):
    """diffusers' layerwise casting of the denoiser: fp8 storage, cast up per layer."""

    name = "layerwise-cast"
    summary = "store the denoiser's weights in fp8, cast each layer up to compute (diffusers)"
    Config = LayerwiseCastConfig
    stage = Strategy.STAGE_QUANTIZATION
    exclusive_group = "weight storage"
    saves_memory = True
    rewrites = ("denoiser",)

    @property
    def storage_dtype(self) -> torch.dtype:
        """The torch dtype the weights are stored in."""
        return STORAGE[self.config.storage]

    def supports(self, model: ReferenceModel) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        if model.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return (f"layerwise casting computes in the model's dtype, and {model.name} is "
                    f"in {model.dtype}, not a floating-point compute dtype")
        if not any(p.is_floating_point() for p in model.denoiser.parameters()):
            return f"{type(model.denoiser).__name__} has no floating-point weights to store in fp8"
        return None

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.exclusive_group == "quantization":
            return (f"{other.name} and layerwise-cast both choose how the denoiser's weights "
                    "are stored; use one")
        return None

    def added_weight_bytes(self, model: ReferenceModel) -> int:
        """The denoiser's floating-point weights once more at the storage dtype's width."""
        return sum(p.numel() * self.storage_dtype.itemsize
                   for p in model.denoiser.parameters() if p.is_floating_point())

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        from diffusers.hooks import apply_layerwise_casting

        denoiser = model.denoiser
        if hasattr(denoiser, "enable_layerwise_casting"):  # a diffusers model: its own skips
            denoiser.enable_layerwise_casting(storage_dtype=self.storage_dtype,
                                              compute_dtype=model.dtype)
        else:
            apply_layerwise_casting(denoiser, storage_dtype=self.storage_dtype,
                                    compute_dtype=model.dtype)
        return model
