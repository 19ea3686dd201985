"""The ``arch:<family>@tiny`` models for tests, each loaded once per session (clone before
changing one)."""

from __future__ import annotations

from functools import cache

#: The diffusion families and their published denoiser sizes (see tests/bench/models/test_arch.py).
DIFFUSION_FAMILIES = ("sd15", "sdxl", "sd3", "flux", "flux2", "flux2-klein", "qwen-image", "z-image",
                      "pixart-sigma", "sana")
#: The video diffusion families (see tests/bench/models/test_arch_video.py): their models
#: generate (N, T, C, H, W) frames, so the image tests of test_arch.py leave them out.
VIDEO_FAMILIES = ("wan2.2", "wan2.2-a14b", "ltx2", "hunyuan-video1.5")


@cache
def tiny(family: str):
    """``arch:<family>@tiny``, loaded through the registry (shared: clone before changing)."""
    from bench.models.registry import load_model

    return load_model(f"arch:{family}@tiny")


def generate(model, steps: int, prompts=("a cat sleeping on a windowsill",), seeds=(0,), **kwargs):
    """``model.generate`` with ``steps`` denoising steps."""
    return model.generate(list(prompts), list(seeds), num_inference_steps=steps, **kwargs)
