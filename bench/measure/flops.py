"""Model size next to speed: parameters, and FLOPs of one denoising step or one decoded token.

FLOPs are counted with torch's own counter (:class:`torch.utils.flop_counter.FlopCounterMode`)
over one generation call of one image, split by component: what runs inside the modules of
the components that run once per call (the text encoders, the VAE decoder: roles
``text_encoder*`` and ``decoder``, :func:`once_per_call`) is counted apart, per call
(``flops_once``, and per role in ``flops_by_component``), and the rest (the denoiser's steps
and whatever runs between them; a draft model's passes for token models) is divided by the
steps (diffusion) or the tokens (autoregressive models) of that call (``flops_per_step``).
For a stack that makes some steps cheaper (caching, token merging) this is the average step,
which is what the stack buys; a stack that changes the encoders or the decoder changes
``flops_once``. ``flops_per_image`` is the whole call: ``flops_per_step * steps +
flops_once``. The counter covers the operators it has formulas for (matrix products,
convolutions, attention), which carry nearly all the work; elementwise operations are not
counted. Classifier-free guidance's doubled batch is inside the call, so it is counted.

A component's FLOPs are those counted while any module of its tree runs (forward hooks on
every sub-module, so ``vae.decode``, which is not the module's own forward, is caught
through the modules it calls); a module that is also part of a per-step component counts
with the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.models.base import has_tokens

METHOD = ("torch.utils.flop_counter.FlopCounterMode over one call of one image, the "
          "once-per-call encoders and decoder counted apart")


def once_per_call(role: str) -> bool:
    """Whether the component playing ``role`` runs once per generation call (the text
    encoders, the decoder) rather than at every step (the denoiser, a draft model)."""
    return role == "decoder" or role.startswith("text_encoder")


@dataclass
class ModelSize:
    """Parameters and FLOPs of one measured stack.

    Attributes:
        params: parameters of every component (shared ones once).
        flops_per_image: FLOPs of one whole generation call of one image (None: not
            counted): ``flops_per_step`` times the steps (or tokens) plus ``flops_once``.
        flops_per_step: per denoising step, or per decoded token for token models: the
            denoising loop only, without the once-per-call encoders and decoder.
        flops_once: FLOPs of the once-per-call components (text encoders, decoder) in one
            call of one image (0 where the model has none).
        flops_by_component: ``flops_once`` by role, and ``denoiser``: the loop's FLOPs for
            the whole call (every step, with what runs between steps).
        per: ``step`` or ``token``.
        method: how the FLOPs were counted, or why they were not (``unavailable: ...``).
    """

    params: int
    flops_per_image: float | None = None
    flops_per_step: float | None = None
    flops_once: float | None = None
    flops_by_component: dict[str, float] = field(default_factory=dict)
    per: str = "step"
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ComponentMeter:
    """Attributes the counter's running total to the once-per-call components: their FLOPs
    are the total's growth while one of their modules runs (the outermost entry counts)."""

    def __init__(self, total: Callable[[], float], components: dict[str, Any]) -> None:
        self.total = total
        self.flops: dict[str, float] = {}
        self._depth = 0
        self._role: str | None = None
        self._start = 0.0
        self._roles = self._assign(components)

    @staticmethod
    def _modules(module: Any) -> list[Any]:
        modules = getattr(module, "modules", None)
        return list(modules()) if callable(modules) else []

    def _assign(self, components: dict[str, Any]) -> dict[int, tuple[str, Any]]:
        per_step = {id(m) for role, c in components.items() if not once_per_call(role)
                    for m in self._modules(c)}
        roles: dict[int, tuple[str, Any]] = {}
        for role, component in sorted(components.items()):
            if not once_per_call(role):
                continue
            self.flops[role] = 0.0
            for m in self._modules(component):
                if id(m) not in per_step and id(m) not in roles:
                    roles[id(m)] = (role, m)
        return roles

    def _enter(self, role: str) -> None:
        if self._depth == 0:
            self._role, self._start = role, self.total()
        self._depth += 1

    def _exit(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._role is not None:
            self.flops[self._role] += self.total() - self._start
            self._role = None

    @contextmanager
    def hooked(self) -> Iterator[_ComponentMeter]:
        """Count while inside: forward hooks on every module of the once-per-call roles."""
        handles = []
        try:
            for role, module in self._roles.values():
                handles.append(module.register_forward_pre_hook(
                    lambda mod, args, role=role: self._enter(role)))
                handles.append(module.register_forward_hook(
                    lambda mod, args, out: self._exit(), always_call=True))
            yield self
        finally:
            for handle in handles:
                handle.remove()


def count(model: Any, prompt: str, seed: int = 0) -> ModelSize:
    """Count the parameters of ``model`` and the FLOPs of generating one image, per step
    (or token) of the denoising loop and once per call for the encoders and decoder.

    Never raises for the count itself: a model whose call the counter cannot follow (e.g. a
    compiled graph) gets ``method = "unavailable: <why>"``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = ModelSize(params=model.parameter_count())
    tokens = model.tokens_per_image if has_tokens(model) else None
    per_call = tokens if tokens else model.steps
    size.per = "token" if tokens else "step"
    components = model.components()
    if getattr(model, "compiled", False) or any(_compiled(m) for m in components.values()):
        size.method = ("unavailable: compiled graphs hide their operators from torch's FLOP "
                       "counter; the same stack without compile has the same FLOPs")
        return size
    counter = FlopCounterMode(display=False)
    meter = _ComponentMeter(lambda: float(counter.get_total_flops()), components)
    try:
        with counter, meter.hooked(), torch.inference_mode():
            model.generate([prompt], [seed])
    except Exception as exc:  # noqa: BLE001 - a count is a nice-to-have, never fatal
        size.method = f"unavailable: the FLOP counter failed ({type(exc).__name__}: {exc})"[:300]
        return size
    total = float(counter.get_total_flops())
    once = float(sum(meter.flops.values()))
    size.flops_per_image = total
    size.flops_once = once
    size.flops_by_component = {**meter.flops, "denoiser": total - once}
    if per_call:
        size.flops_per_step = (total - once) / per_call
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


__all__ = ["METHOD", "ModelSize", "count", "once_per_call"]
