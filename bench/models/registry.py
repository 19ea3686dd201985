"""The model zoo: embedded reference models by name, and ``hf:<id or path>`` for diffusers
pipelines the user has locally."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass

import torch

from bench.core.config import DEFAULT_MODEL
from bench.core.errors import ModelError
from bench.core.kinds import ModelKind
from bench.models import arch, provenance
from bench.models.base import ModelSpec, ReferenceModel
from bench.models.digits import WEIGHTS_ROOT
from bench.models.hub import load_hub


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry: where the loader lives and one line of help."""

    name: str
    loader: str  # "module:function(device) -> ReferenceModel"
    summary: str
    kind: ModelKind
    #: The one (square) size an embedded model generates, in pixels; None: not declared.
    resolution: int | None = None


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "digits-unet",
            "bench.models.digits.unet:load",
            "text-conditioned UNet diffusion model on 16x16 handwritten digits (embedded, default)",
            ModelKind.UNET,
            resolution=16,
        ),
        ModelInfo(
            "digits-dit",
            "bench.models.digits.dit:load",
            "text-conditioned transformer (PixArt DiT, 64 tokens) diffusion model on 16x16 digits (embedded)",
            ModelKind.DIT,
            resolution=16,
        ),
        ModelInfo(
            "digits-ar",
            "bench.models.digits.ar:load",
            "autoregressive LLM-style generator (Llama) writing 8x8 digits as 64 pixel tokens (embedded)",
            ModelKind.AUTOREGRESSIVE,
            resolution=16,
        ),
        ModelInfo(
            "digits-ar-large",
            "bench.models.digits.ar:load_large",
            "digits-ar at 12 layers x 384 (23M params) with a 2 x 128 draft: a target ~20x its "
            "draft's cost per token, where speculative decoding pays off (embedded)",
            ModelKind.AUTOREGRESSIVE,
            resolution=16,
        ),
        ModelInfo(
            "digits-video",
            "bench.models.digits.video:load",
            "text-to-video Wan DiT (512 tokens) on 8-frame clips of a 16x16 digit moving as the "
            "prompt says (embedded)",
            ModelKind.DIT,
            resolution=16,
        ),
    )
}



def list_models(include_arch: bool = True) -> list[ModelInfo]:
    """Every registered model: the embedded ones in name order, then the ``arch:`` models."""
    embedded = [MODELS[name] for name in sorted(MODELS)]
    if not include_arch:
        return embedded
    return embedded + [get_model_info(name) for name in arch.names()]


def _arch_info(name: str) -> ModelInfo:
    family, size = arch.parse(name)
    tiny = size == "tiny"
    full = (f"{family.resolution}x{family.width}px" if family.width
            else f"{family.resolution}px")
    summary = family.summary + (
        f"; tiny variant (same classes and layouts, {family.tiny_resolution}px, for CPUs)"
        if tiny else f"; full size, {full}"
    ) + ", random weights"
    return ModelInfo(
        name=name,
        loader="bench.models.arch:load",
        summary=summary,
        kind=family.kind,
        resolution=family.tiny_resolution if tiny else family.resolution,
    )


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; unknown names suggest close matches."""
    if name in MODELS:
        return MODELS[name]
    if name.startswith("arch:"):
        return _arch_info(name)
    close = difflib.get_close_matches(name, MODELS, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(
        f"unknown model {name!r}{hint} (run `accelbench list`; for a diffusers pipeline "
        "use hf:<repo id or local path>)"
    )


def check_device(device: str) -> None:
    """Fail at once, with the reason, on a device this machine does not have."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device 'mps' asked for, but MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ModelError(f"device type {dev.type!r} is not supported; use cpu, cuda or mps")


def check_resolution(name: str, resolution: tuple[int, int]) -> None:
    """Refuse, with the reason, a (height, width) that model ``name`` cannot generate at.

    ``hf:`` pipelines take height and width call arguments, which diffusers needs to be
    multiples of 8 (the VAE's downsampling); an embedded model generates its native size only.
    """
    height, width = resolution
    if name.startswith("hf:"):
        if height < 8 or width < 8 or height % 8 or width % 8:
            raise ModelError(
                f"{name}: resolution {width}x{height} (width x height) is not a multiple of 8; "
                "diffusers pipelines need height and width divisible by their VAE's factor (8)"
            )
        return
    if name.startswith("arch:"):
        family, _ = arch.parse(name)
        m = family.resolution_multiple
        if m is not None:
            if height < m or width < m or height % m or width % m:
                raise ModelError(
                    f"{name}: resolution {width}x{height} (width x height) is not a multiple of "
                    f"{m}, which {family.name}'s VAE and patch size need"
                )
            return
    info = get_model_info(name)
    if info.resolution is None:
        raise ModelError(f"{name} declares no resolution it can be asked for; leave it unset")
    if (height, width) != (info.resolution, info.resolution):
        raise ModelError(
            f"{name} generates {info.resolution}x{info.resolution} images only (it was trained "
            f"at that size); {width}x{height} cannot be measured"
        )


#: ``--dtype`` names and the torch dtypes they stand for.
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``--dtype`` name (``fp32``, ``bf16``, ``fp16``)."""
    if name not in DTYPES:
        raise ModelError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


def dtype_name(dtype) -> str:
    """The ``--dtype`` name of a torch dtype (``torch.bfloat16`` -> ``bf16``)."""
    text = str(dtype).replace("torch.", "")
    return next((k for k, v in DTYPES.items() if v == text), text)


def default_dtype(name: str, device: str) -> str:
    """The dtype a model loads in when ``--dtype`` is not given: on CUDA an ``arch:`` model's
    published weights' dtype (bf16 for Flux, SD3, Sana, PixArt-Sigma; fp16 for SD 1.5 and
    SDXL), everything else and every model on the CPU fp32."""
    if torch.device(device).type == "cuda" and name.startswith("arch:"):
        family, _ = arch.parse(name)
        return family.cuda_dtype
    return "fp32"


def load_model(spec: ModelSpec | str) -> ReferenceModel:
    """Load a registered model or a ``hf:`` pipeline onto ``spec.device`` in ``spec.dtype``
    (its default where None), and set its :attr:`~ReferenceModel.source` so that its
    fingerprint reads no weight."""
    if isinstance(spec, str):
        spec = ModelSpec(spec)
    check_device(spec.device)
    dtype = torch_dtype(spec.dtype or default_dtype(spec.name, spec.device))
    if spec.is_hub:
        return load_hub(spec, dtype)
    if spec.name.startswith("arch:"):
        return arch.load(spec.name, device=spec.device, dtype=dtype)
    info = get_model_info(spec.name)
    module_name, _, attr = info.loader.partition(":")
    loader = getattr(importlib.import_module(module_name), attr)
    model = loader(device=spec.device)
    if model.dtype != dtype:
        for role, module in model.components().items():
            model.set_component(role, module.to(dtype=dtype))
        model.dtype = dtype
    folder = WEIGHTS_ROOT / spec.name
    if folder.is_dir():
        model.set_source(provenance.files_source(folder, content=True))
    return model


__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "MODELS",
    "WEIGHTS_ROOT",
    "ModelError",
    "ModelInfo",
    "check_device",
    "check_resolution",
    "default_dtype",
    "dtype_name",
    "get_model_info",
    "list_models",
    "load_model",
    "torch_dtype",
]
