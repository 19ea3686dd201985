"""Any diffusers text-to-image pipeline, by hub repo id or local path (``hf:<id or path>``).

Weights are read with safetensors from local files only, unless the user allows a download;
remote code is never run unless asked for. Missing weights fail at once with what to do.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.errors import ModelError
from bench.core.kinds import ModelKind
from bench.models import provenance
from bench.models.base import ModelSpec, ReferenceModel, StepCallback

#: Prompts for hub models: varied subjects, short enough for any text encoder.
HUB_PROMPTS = (
    "a photograph of an astronaut riding a horse",
    "a red bicycle leaning against a brick wall",
    "a bowl of fruit on a wooden table, studio lighting",
    "a lighthouse on a cliff at sunset",
    "a watercolor painting of a fox in the snow",
    "a cup of coffee next to an open book",
    "a city street at night in the rain",
    "a close-up of a sunflower",
    "a cat sleeping on a windowsill",
    "a mountain lake with reflections of pine trees",
)


def hub_prompts(n: int) -> tuple[list[str], list[int]]:
    """``n`` prompts cycling over :data:`HUB_PROMPTS`, and each one's index there."""
    return [HUB_PROMPTS[i % len(HUB_PROMPTS)] for i in range(n)], [
        i % len(HUB_PROMPTS) for i in range(n)
    ]


#: Component roles besides the denoiser -> the diffusers pipeline attribute holding them:
#: the text encoders, the VAE, the second expert of a two-expert denoiser (Wan 2.2 A14B's
#: low-noise ``transformer_2``) and an audio-video pipeline's other networks (LTX-2's text
#: connectors between the text encoder and the transformer, its audio VAE and vocoder), so
#: that a precision change or the weight accounting reaches every one of them.
_COMPONENT_ATTRS = {
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
    "text_encoder_3": "text_encoder_3",
    "decoder": "vae",
    "denoiser_2": "transformer_2",
    "text_connector": "connectors",
    "audio_decoder": "audio_vae",
    "vocoder": "vocoder",
}


def denoiser_of(pipe: Any) -> torch.nn.Module | None:
    """The pipeline's UNet, else its transformer, else None.

    Tested with ``is not None``: a module's truth value calls ``len()``, which compiled and
    other wrapped modules (``UNet2DConditionModel`` under ``torch.compile``) do not support.
    """
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        return unet
    return getattr(pipe, "transformer", None)


def step_callback_args(pipe: Any, step_callback: StepCallback | None) -> dict[str, Any]:
    """Keyword arguments of ``pipe(...)`` that call ``step_callback(i)`` after every step:
    ``callback_on_step_end`` where the pipeline has it, else the older ``callback`` with
    ``callback_steps=1`` (PixArt-Sigma's pipeline); none for a pipeline that takes neither
    (HunyuanVideo-1.5's), whose steps :func:`scheduler_steps` counts instead."""
    if step_callback is None or not takes_step_callback(pipe):
        return {}
    params = inspect.signature(type(pipe).__call__).parameters
    if "callback_on_step_end" in params:
        def on_step_end(pipe, i, t, kwargs):
            step_callback(i)
            return {}

        return {"callback_on_step_end": on_step_end}

    def on_step(i, t, latents):
        step_callback(i)

    return {"callback": on_step, "callback_steps": 1}


def takes_step_callback(pipe: Any) -> bool:
    """True where ``pipe(...)`` takes a per-step callback (``callback_on_step_end`` or
    ``callback``)."""
    params = inspect.signature(type(pipe).__call__).parameters
    return "callback_on_step_end" in params or "callback" in params


@contextlib.contextmanager
def scheduler_steps(pipe: Any, step_callback: StepCallback | None) -> Iterator[None]:
    """Call ``step_callback(i)`` after the ``i``-th ``pipe.scheduler.step`` while the block
    runs, for a pipeline that takes no step callback (one scheduler step per denoising step,
    as in every flow-matching pipeline); nothing for the others or without a callback."""
    scheduler = getattr(pipe, "scheduler", None)
    if step_callback is None or scheduler is None or takes_step_callback(pipe):
        yield
        return
    step = scheduler.step
    count = itertools.count()

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = step(*args, **kwargs)
        step_callback(next(count))
        return out

    scheduler.step = counted  # an instance attribute, shadowing the method for this call
    try:
        yield
    finally:
        del scheduler.step


def as_videos(frames: Any) -> torch.Tensor:
    """A video pipeline's ``frames`` output at ``output_type="pt"`` (one ``(T, C, H, W)``
    tensor per video, or them stacked) as one float ``(N, T, C, H, W)`` tensor in [0, 1] on
    the CPU."""
    if isinstance(frames, (list, tuple)):
        frames = torch.stack([torch.as_tensor(f) for f in frames])
    frames = torch.as_tensor(frames)
    if frames.ndim != 5:
        raise ModelError(f"a video pipeline gave frames of shape {tuple(frames.shape)}; "
                         "expected (videos, frames, channels, height, width)")
    return frames.float().clamp(0, 1).cpu()


@dataclass
class HubModel(ReferenceModel):
    """A diffusers pipeline with a UNet or a transformer denoiser (no data domain: its real
    images, where there are any, come from the quality settings)."""

    def generate(self, prompts: Sequence[str], seeds: Sequence[int],
                 step_callback: StepCallback | None = None, **call_args: Any) -> torch.Tensor:
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        args = {**self.call_args, **call_args}
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        extra = step_callback_args(self.pipe, step_callback)
        with torch.inference_mode(), scheduler_steps(self.pipe, step_callback):
            out = self.pipe(
                prompt=list(prompts), generator=generators, output_type="pt", **args, **extra
            )
        if hasattr(out, "frames"):  # a video pipeline: (N, T, C, H, W)
            return as_videos(out.frames)
        images = out.images if hasattr(out, "images") else out[0]
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(images)
        return images.float().clamp(0, 1).cpu()

    def components(self) -> dict[str, torch.nn.Module]:
        """``denoiser`` (the UNet or transformer), every text encoder the pipeline has
        (``text_encoder``, and SDXL's, SD3's and Flux's ``text_encoder_2``/``text_encoder_3``,
        so that a precision change reaches all of them), ``decoder`` (the VAE), and where the
        pipeline has them ``denoiser_2`` (a second expert) and an audio-video pipeline's
        ``text_connector``, ``audio_decoder`` and ``vocoder`` (see ``_COMPONENT_ATTRS``)."""
        comps = {"denoiser": denoiser_of(self.pipe)}
        for role, attr in _COMPONENT_ATTRS.items():
            if getattr(self.pipe, attr, None) is not None:
                comps[role] = getattr(self.pipe, attr)
        return comps

    def set_component(self, role: str, module: torch.nn.Module) -> None:
        if role == "denoiser":
            attr = "unet" if getattr(self.pipe, "unet", None) is not None else "transformer"
        elif getattr(self.pipe, _COMPONENT_ATTRS.get(role, ""), None) is not None:
            attr = _COMPONENT_ATTRS[role]
        else:  # not a role, or one this pipeline has no network for (a vocoder on Flux)
            raise KeyError(f"{self.name} has no component role {role!r}")
        setattr(self.pipe, attr, module)

    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        return hub_prompts(n)


def _resolve(name: str, allow_download: bool) -> str:
    target = name.removeprefix("hf:")
    if not target:
        raise ModelError("hf: needs a repo id or a local path, e.g. hf:stabilityai/sd-turbo")
    looks_local = target.startswith((".", "/", "~")) or os.path.sep in target.rstrip("/").split(
        "/", 1
    )[0]
    path = Path(target).expanduser()
    if path.exists():
        if not (path / "model_index.json").exists():
            raise ModelError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
        return str(path)
    if looks_local:
        raise ModelError(f"no pipeline folder at {path}")
    if allow_download:
        return target
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(target, "model_index.json")
    if not isinstance(cached, str):
        raise ModelError(
            f"{target} is not in the local Hugging Face cache and downloads are off. "
            f"Fetch it first (`huggingface-cli download {target}`), pass a local path "
            "(hf:/path/to/pipeline), or allow the download with --allow-download"
        )
    return target


def pipeline_folder(source: str) -> Path | None:
    """The local folder of a pipeline: ``source`` itself, or its snapshot in the Hugging Face
    cache; None where it has none (a download not made yet)."""
    path = Path(source)
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "model_index.json")
    return Path(cached).parent if isinstance(cached, str) else None


def load_hub(spec: ModelSpec, dtype: torch.dtype | None = None) -> HubModel:
    """Load a diffusers pipeline for ``spec`` in ``dtype`` (fp32 when None) or fail at once
    saying why. Weights load with low host memory (accelerate's empty-weight init: each
    tensor is read once, never materialised twice)."""
    from diffusers import DiffusionPipeline  # lazy: diffusers is slow to import

    source = _resolve(spec.name, spec.allow_download)
    dtype = dtype or torch.float32
    try:
        pipe = DiffusionPipeline.from_pretrained(
            source,
            torch_dtype=dtype,
            use_safetensors=True,
            low_cpu_mem_usage=True,
            local_files_only=not spec.allow_download,
            trust_remote_code=spec.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {spec.name}: {exc}") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(spec.device)
    denoiser = denoiser_of(pipe)
    if denoiser is None:
        raise ModelError(f"{spec.name} has neither a unet nor a transformer: not a diffusion model")
    kind = ModelKind.UNET if getattr(pipe, "unet", None) is not None else ModelKind.DIT
    folder = pipeline_folder(source)
    model = HubModel(
        name=spec.name,
        kind=kind,
        device=torch.device(spec.device),
        dtype=denoiser.dtype,
        call_args={"num_inference_steps": 25, "guidance_scale": 5.0},
        pipe=pipe,
    )
    model.set_source(provenance.files_source(folder) if folder is not None else None)
    return model
