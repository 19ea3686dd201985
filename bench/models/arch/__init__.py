"""Architecture models ``arch:<family>[@tiny]``: the real pipeline classes of the models people
accelerate (SD 1.5, SDXL, SD3, Flux, FLUX.2, Qwen-Image, Z-Image, PixArt-Sigma, Sana; Wan 2.2,
LTX-2 and HunyuanVideo-1.5 for video; Janus and Emu3 for autoregressive generation), built
from their published configurations with random weights, nothing downloaded.

Latency, memory and energy of a generation call depend on the architecture and its sizes, not
on the values of its weights, so a pipeline built this way costs what the real one costs. Its
images mean nothing: quality is ``unavailable: random weights``, except fidelity against the
same model's baseline, which measures numerical deviation (useful for precision and kernels).

``@tiny`` keeps the classes, block layouts and component kinds of a family at a size a 2-core
CPU runs in well under a second per call (the video families' tiny calls in a few tenths of
a second to a few seconds: HunyuanVideo-1.5 keeps its real 1985-token context); those
are what CPU tests and CI run.

Each family lives in its own module exposing ``build(size, device, seed) -> ReferenceModel``
and is listed in :data:`FAMILIES` as a lazy ``module:function`` entry, so listing the families
imports nothing heavy.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

import torch

from bench.core.errors import ModelError
from bench.core.kinds import ModelKind
from bench.models.provenance import arch_source

PREFIX = "arch:"
SIZES = ("full", "tiny")
TINY_SUFFIX = "@tiny"


@dataclass(frozen=True)
class ArchFamily:
    """One architecture family.

    Attributes:
        name: the family's name in ``arch:<name>``.
        builder: ``"module:function"``; ``function(size, device, seed)`` returns the model.
        summary: one line for ``accelbench list`` (the real model it reproduces).
        kind: the :class:`~bench.core.kinds.ModelKind` of the family's models.
        resolution: the full-size model's default (square) resolution in pixels; the
            height where ``width`` is given.
        tiny_resolution: the ``@tiny`` variant's default resolution.
        resolution_multiple: height and width must be multiples of this (the VAE's and the
            patch size's factor); None for models that generate one size only.
        cuda_dtype: the dtype its published weights use (``fp16``, ``bf16``): what it loads
            in on CUDA unless ``--dtype`` says otherwise (on the CPU: fp32).
        width: the full-size default width where its frames are not square (video models'
            landscape frames; ``resolution`` is then the height); None: square.
        frame_rate: frames per second of a video family's published output (its models'
            :attr:`~bench.models.base.ReferenceModel.frame_rate`); None for image families.
    """

    name: str
    builder: str
    summary: str
    kind: ModelKind
    resolution: int
    tiny_resolution: int
    resolution_multiple: int | None = 8
    cuda_dtype: str = "bf16"
    width: int | None = None
    frame_rate: float | None = None


#: The families, by name (one entry per family module; the modules import lazily).
FAMILIES: dict[str, ArchFamily] = {
    family.name: family
    for family in (
        # -- diffusion (bench/models/arch/<family>.py) --
        ArchFamily(
            "sd15",
            "bench.models.arch.sd15:build",
            "Stable Diffusion 1.5 (stable-diffusion-v1-5): 860M UNet, CLIP ViT-L, PNDM, 50 steps",
            ModelKind.UNET,
            resolution=512,
            tiny_resolution=64,
            resolution_multiple=8,
            cuda_dtype="fp16",
        ),
        ArchFamily(
            "sdxl",
            "bench.models.arch.sdxl:build",
            "Stable Diffusion XL base 1.0: 2.6B UNet, CLIP ViT-L + bigG, Euler, 50 steps",
            ModelKind.UNET,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=8,
            cuda_dtype="fp16",
        ),
        ArchFamily(
            "sd3",
            "bench.models.arch.sd3:build",
            "Stable Diffusion 3 Medium: 2B MMDiT, CLIP L + bigG + T5-XXL, flow Euler, 28 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "flux",
            "bench.models.arch.flux:build",
            "FLUX.1 [dev]: 12B double/single-stream DiT, CLIP L + T5-XXL, guidance-distilled, "
            "50 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "flux2",
            "bench.models.arch.flux2:build",
            "FLUX.2 [dev]: 32B double/single-stream DiT, Mistral Small 3.1 24B, "
            "guidance-distilled, 50 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "flux2-klein",
            "bench.models.arch.flux2:build_klein",
            "FLUX.2 [klein] 4B: 3.9B double/single-stream DiT, Qwen3-4B, step-distilled, "
            "4 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "qwen-image",
            "bench.models.arch.qwen_image:build",
            "Qwen-Image: 20B dual-stream MMDiT, Qwen2.5-VL 7B, true CFG, 50 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "z-image",
            "bench.models.arch.z_image:build",
            "Z-Image-Turbo: 6B single-stream DiT, Qwen3-4B, distilled, 9 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "pixart-sigma",
            "bench.models.arch.pixart_sigma:build",
            "PixArt-Sigma XL/2 1024: 611M DiT, T5-XXL, SDXL VAE, DPM-Solver++, 20 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=64,
            resolution_multiple=16,
        ),
        ArchFamily(
            "sana",
            "bench.models.arch.sana:build",
            "Sana 1600M 1024px: 1.6B linear-attention DiT, Gemma 2 2B, DC-AE f32, flow "
            "DPM-Solver, 20 steps",
            ModelKind.DIT,
            resolution=1024,
            tiny_resolution=128,
            resolution_multiple=32,
        ),
        # -- video diffusion (bench/models/arch/<family>.py; generate (N, T, C, H, W) frames) --
        ArchFamily(
            "wan2.2",
            "bench.models.arch.wan:build",
            "Wan2.2 TI2V-5B (Wan-AI/Wan2.2-TI2V-5B) as text-to-video: 5B DiT, UMT5-XXL, "
            "16x16x4 VAE, flow UniPC, 121 frames of 704x1280 at 24 fps, 50 steps",
            ModelKind.DIT,
            resolution=704,
            tiny_resolution=64,
            resolution_multiple=32,
            width=1280,
            frame_rate=24.0,
        ),
        ArchFamily(
            "wan2.2-a14b",
            "bench.models.arch.wan:build_a14b",
            "Wan2.2 T2V-A14B (Wan-AI/Wan2.2-T2V-A14B): two 14B expert DiTs (high/low noise), "
            "UMT5-XXL, flow UniPC, 81 frames of 720x1280 at 16 fps, 40 steps",
            ModelKind.DIT,
            resolution=720,
            tiny_resolution=64,
            resolution_multiple=16,
            width=1280,
            frame_rate=16.0,
        ),
        ArchFamily(
            "ltx2",
            "bench.models.arch.ltx2:build",
            "LTX-2 (Lightricks/LTX-2): 19B audio-video DiT, Gemma 3 12B, 32x32x8 VAE, audio "
            "VAE and vocoder, 121 frames of 512x768 at 24 fps with sound, 40 steps",
            ModelKind.DIT,
            resolution=512,
            tiny_resolution=64,
            resolution_multiple=32,
            width=768,
            frame_rate=24.0,
        ),
        ArchFamily(
            "hunyuan-video1.5",
            "bench.models.arch.hunyuan_video:build",
            "HunyuanVideo-1.5 480p text-to-video (tencent/HunyuanVideo-1.5): 8.3B DiT, "
            "Qwen2.5-VL 7B + ByT5 glyph encoder, 16x16x4 VAE, 121 frames of 480x848 at 24 fps, "
            "50 steps",
            ModelKind.DIT,
            resolution=480,
            tiny_resolution=64,
            resolution_multiple=16,
            width=848,
            frame_rate=24.0,
        ),
        # -- autoregressive (bench/models/arch/<family>.py, decoded by bench.models.ar_decoding) --
        ArchFamily(
            "janus",
            "bench.models.arch.janus:build",
            "Janus-Pro 1B (deepseek-community/Janus-Pro-1B): 24 x 2048 Llama, VQ-16 codes, "
            "24 x 24 image tokens, guidance 5",
            ModelKind.AUTOREGRESSIVE,
            resolution=384,
            tiny_resolution=64,
            resolution_multiple=None,
        ),
        ArchFamily(
            "emu3",
            "bench.models.arch.emu3:build",
            "Emu3-Gen (BAAI/Emu3-Gen): 32 x 4096 Llama-style LM, 184622-token vocabulary, "
            "90 rows of 90 visual tokens + end-of-line, guidance 3",
            ModelKind.AUTOREGRESSIVE,
            resolution=720,
            tiny_resolution=32,
            resolution_multiple=None,
        ),
    )
}


def is_arch(name: str) -> bool:
    """True for ``arch:...`` model names."""
    return name.startswith(PREFIX)


def parse(name: str) -> tuple[ArchFamily, str]:
    """``arch:sdxl@tiny`` -> (the sdxl family, ``"tiny"``); unknown names suggest close ones.

    Raises:
        ModelError: not an ``arch:`` name, or an unknown family or size.
    """
    if not is_arch(name):
        raise ModelError(f"{name!r} is not an architecture model (arch:<family>[@tiny])")
    body = name[len(PREFIX):]
    family_name, at, size = body.partition("@")
    size = size if at else "full"
    if size not in SIZES or (at and size == "full"):
        raise ModelError(f"{name!r}: the size after '@' must be 'tiny' (or nothing for the full size)")
    if family_name not in FAMILIES:
        close = difflib.get_close_matches(family_name, FAMILIES, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(PREFIX + c) for c in close)}?" if close else ""
        known = ", ".join(sorted(FAMILIES)) or "none"
        raise ModelError(f"unknown architecture {family_name!r}{hint} (known: {known})")
    return FAMILIES[family_name], size


def names() -> list[str]:
    """Every ``arch:`` model name, full and tiny, in family order."""
    return [f"{PREFIX}{f}{suffix}" for f in sorted(FAMILIES) for suffix in ("", TINY_SUFFIX)]


def load(name: str, device: str = "cpu", seed: int = 0, dtype: Any = None):
    """Build the ``arch:`` model ``name`` on ``device`` (random weights drawn from ``seed``)
    directly in ``dtype`` (default fp32): the tensors are created in it on the device, so a
    full-size model never exists in another dtype or on another device first."""
    family, size = parse(name)
    module_name, _, attr = family.builder.partition(":")
    builder = getattr(importlib.import_module(module_name), attr)
    dtype = dtype or torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = builder(size=size, device=device, seed=seed)
    finally:
        torch.set_default_dtype(previous)
    for role, module in model.components().items():  # tensors a builder made in fp32 on purpose
        if any(t.is_floating_point() and t.dtype != dtype
               for t in (*module.parameters(), *module.buffers())):
            model.set_component(role, module.to(dtype=dtype))
    model.name = name
    model.random_weights = True
    model.dtype = dtype
    model.set_source(arch_source(family.name, size, seed, dtype, model.components()))
    return model


__all__ = ["FAMILIES", "PREFIX", "SIZES", "ArchFamily", "is_arch", "load", "names", "parse"]
