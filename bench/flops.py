"""Model size next to speed: parameters, and FLOPs of one denoising step or one decoded token.

FLOPs are counted with torch's own counter (:class:`torch.utils.flop_counter.FlopCounterMode`)
over one generation call of one image, then divided by the steps (diffusion) or the tokens
(autoregressive models) of that call: for a stack that makes some steps cheaper (caching,
token merging) this is the average step, which is what the stack buys. The counter covers
the operators it has formulas for (matrix products, convolutions, attention), which carry
nearly all the work; elementwise operations are not counted. Classifier-free guidance's
doubled batch is inside the call, so it is counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

METHOD = "torch.utils.flop_counter.FlopCounterMode over one call of one image"


@dataclass
class ModelSize:
    """Parameters and FLOPs of one measured stack.

    Attributes:
        params: parameters of every component (shared ones once).
        flops_per_image: FLOPs of one generation call of one image (None: not counted).
        flops_per_step: per denoising step, or per decoded token for token models.
        per: ``step`` or ``token``.
        method: how the FLOPs were counted, or why they were not (``unavailable: ...``).
    """

    params: int
    flops_per_image: float | None = None
    flops_per_step: float | None = None
    per: str = "step"
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count(model: Any, prompt: str, seed: int = 0) -> ModelSize:
    """Count the parameters of ``model`` and the FLOPs of generating one image.

    Never raises for the count itself: a model whose call the counter cannot follow (e.g. a
    compiled graph) gets ``method = "unavailable: <why>"``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = ModelSize(params=model.parameter_count())
    tokens = getattr(model, "tokens_per_image", None)
    per_call = tokens if tokens else model.steps
    size.per = "token" if tokens else "step"
    if getattr(model, "compiled", False) or any(
        _compiled(m) for m in model.components().values()
    ):
        size.method = ("unavailable: compiled graphs hide their operators from torch's FLOP "
                       "counter; the same stack without compile has the same FLOPs")
        return size
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            model.generate([prompt], [seed])
    except Exception as exc:  # noqa: BLE001 - a count is a nice-to-have, never fatal
        size.method = f"unavailable: the FLOP counter failed ({type(exc).__name__}: {exc})"[:300]
        return size
    total = float(counter.get_total_flops())
    size.flops_per_image = total
    if per_call:
        size.flops_per_step = total / per_call
    return size


def _compiled(component: object) -> bool:
    """Whether a component is (or holds) a compiled program: the ``torch.compile`` wrapper, or
    sub-modules compiled in place (``nn.Module.compile``, regional compilation)."""
    if hasattr(component, "_orig_mod"):
        return True
    modules = getattr(component, "modules", None)
    return callable(modules) and any(
        getattr(m, "_compiled_call_impl", None) is not None for m in modules()
    )


__all__ = ["METHOD", "ModelSize", "count"]
