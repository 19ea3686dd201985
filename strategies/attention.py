"""Attention backend: pin PyTorch's scaled-dot-product attention to one kernel.

diffusers' default processors (``AttnProcessor2_0`` and friends) call
``torch.nn.functional.scaled_dot_product_attention``, which picks a kernel per call among
*math* (the reference: explicit matmuls and softmax), *flash* (FlashAttention-2; on CPUs
PyTorch's own flash kernel), *efficient* (memory-efficient attention, CUDA) and *cudnn*
(cuDNN's fused attention, recent NVIDIA GPUs). This strategy runs every denoiser call inside
``torch.nn.attention.sdpa_kernel([backend])`` (a diffusers forward hook on the denoiser), so
the measurement says what that one kernel costs. diffusers 0.42's ``set_attention_backend``
only reaches processors that go through its attention dispatcher, which the UNet and PixArt
processors do not; hence the PyTorch context, which reaches both: processors that call SDPA
themselves, and those (FLUX's) that go through the dispatcher on its default native backend,
which is SDPA. Sana's linear self-attention calls no SDPA; only its cross-attention is
pinned (the notes count the processors that use SDPA).

A backend the device cannot run for the model's head sizes and dtype is refused with
PyTorch's own reason, found by running a small probe attention before anything is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from strategies.core.base import Strategy, StrategyConfig, param

#: Parameter value -> name of the ``torch.nn.attention.SDPBackend`` member.
BACKENDS = {
    "math": "MATH",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
}

_HOOK_NAME = "accelbench_sdpa_backend"


@dataclass(frozen=True)
class Config(StrategyConfig):
    """Which SDPA kernel to use."""

    backend: str = param("flash", "scaled-dot-product-attention kernel", choices=tuple(BACKENDS))

    always_show = ("backend",)


def sdp_backend(name: str):
    """The ``SDPBackend`` member for a parameter value."""
    from torch.nn.attention import SDPBackend

    return getattr(SDPBackend, BACKENDS[name])


def attention_shapes(denoiser: torch.nn.Module) -> set[tuple[int, int]]:
    """(heads, head_dim) of every diffusers attention module in ``denoiser`` (the classic
    ``Attention`` and the newer ``AttentionModuleMixin`` ones, e.g. FLUX's)."""
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    shapes = set()
    for m in denoiser.modules():
        if isinstance(m, (Attention, AttentionModuleMixin)) and getattr(m, "heads", None):
            inner = m.to_q.out_features if getattr(m, "to_q", None) is not None else m.inner_dim
            shapes.add((int(m.heads), int(inner // m.heads)))
    return shapes


def probe(backend: str, device: torch.device, dtype: torch.dtype, shapes) -> str | None:
    """Run a small attention with only ``backend`` allowed; PyTorch's reason if it cannot."""
    import warnings

    from torch.nn.attention import sdpa_kernel

    for heads, head_dim in sorted(shapes) or [(2, 32)]:
        q = torch.randn(2, heads, 16, head_dim, device=device, dtype=dtype)
        try:
            with warnings.catch_warnings(record=True) as caught, sdpa_kernel([sdp_backend(backend)]):
                warnings.simplefilter("always")
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
        except RuntimeError as exc:
            why = " ".join(str(w.message).split(".")[0] for w in caught[:2])
            first = str(exc).splitlines()[0]
            return (
                f"PyTorch cannot run the {backend} SDPA kernel on {device} for {dtype} with "
                f"{heads} heads of {head_dim}: {first}" + (f" ({why})" if why else "")
            )
    return None


def calls_sdpa(processor: Any) -> bool:
    """True when a diffusers attention processor runs PyTorch's scaled_dot_product_attention:
    directly (``AttnProcessor2_0``, SD3's joint processor, Sana's cross-attention), or
    through diffusers' attention dispatcher on its default, native backend (FLUX's
    processor), which is PyTorch's SDPA. Sana's linear self-attention does not."""
    import inspect

    inner = getattr(processor, "processor", None)
    if inner is not None:  # a wrapper (fused-qkv's FusedProjections): what it runs decides
        return calls_sdpa(inner)
    try:
        source = inspect.getsource(type(processor).__call__)
    except (OSError, TypeError):  # no source: fall back to diffusers' naming
        name = type(processor).__name__
        return "2_0" in name or "SDPA" in name
    if "scaled_dot_product_attention" in source:
        return True
    if "dispatch_attention_fn" in source:
        backend = getattr(processor, "_attention_backend", None)
        return backend is None or str(getattr(backend, "value", backend)) == "native"
    return False


def sdpa_processors(denoiser: torch.nn.Module) -> tuple[int, int]:
    """(processors that call PyTorch's SDPA, all processors) of ``denoiser``."""
    processors = getattr(denoiser, "attn_processors", None) or {}
    return sum(calls_sdpa(p) for p in processors.values()), len(processors)


def sdpa_kernel_hook(backend: str):
    """A diffusers ``ModelHook`` that runs its module's forward inside ``sdpa_kernel``."""
    from diffusers.hooks import ModelHook

    class SDPAKernelHook(ModelHook):
        def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            from torch.nn.attention import sdpa_kernel

            with sdpa_kernel([sdp_backend(backend)]):
                return self.fn_ref.original_forward(*args, **kwargs)

    return SDPAKernelHook()


class Attention(Strategy):
    """Run the denoiser's attention on one SDPA kernel (math, flash, efficient or cudnn)."""

    name = "attention"
    summary = "pin scaled-dot-product attention to one kernel (backend=flash|math|efficient|cudnn)"
    Config = Config
    stage = Strategy.STAGE_KERNELS
    exclusive_group = "attention kernel"

    def supports_device(self, device: str) -> str | None:
        dev = torch.device(device)
        if dev.type != "cuda" and self.config.backend in ("efficient", "cudnn"):
            return f"the {self.config.backend} SDPA kernel exists only on CUDA GPUs"
        return None

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        denoiser = model.denoiser
        using, total = sdpa_processors(denoiser)
        if not total:
            return (
                f"{type(denoiser).__name__} has no diffusers attention processors to pin (a "
                "transformers model picks its attention kernel through its config's "
                "attn_implementation, not through this strategy)"
            )
        if not using:
            return (
                f"{type(denoiser).__name__}'s attention processors do not call PyTorch's "
                "scaled_dot_product_attention, so the SDPA kernel choice changes nothing"
            )
        return probe(self.config.backend, model.device, model.dtype, attention_shapes(denoiser))

    def apply(self, model):
        from diffusers.hooks import HookRegistry

        registry = HookRegistry.check_if_exists_or_initialize(model.denoiser)
        registry.register_hook(sdpa_kernel_hook(self.config.backend), _HOOK_NAME)
        using, total = sdpa_processors(model.denoiser)
        model.notes["attention"] = {
            "sdpa_backend": self.config.backend,
            "processors_using_sdpa": using,
            "processors": total,
        }
        return model
