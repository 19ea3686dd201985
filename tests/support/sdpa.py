"""Which SDPA kernels a model's denoiser really ran on: a spy on PyTorch's
``scaled_dot_product_attention`` that records the enabled backends at each call made inside
the denoiser (the text encoder's attention is not pinned, so it is not counted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.backends.cuda import flash_sdp_enabled, math_sdp_enabled


def kernels_seen(model: Any, run: Callable[[], Any]) -> tuple[list[tuple[bool, bool]], Any]:
    """Run ``run()`` and return ``(math enabled, flash enabled)`` at each SDPA call inside
    ``model.denoiser``, and what ``run`` returned."""
    seen: list[tuple[bool, bool]] = []
    inside = [False]
    hooks = [model.denoiser.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True)),
             model.denoiser.register_forward_hook(lambda *_: inside.__setitem__(0, False))]
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        if inside[0]:
            seen.append((math_sdp_enabled(), flash_sdp_enabled()))
        return real(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        out = run()
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
        for h in hooks:
            h.remove()
    return seen, out
