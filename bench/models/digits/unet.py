"""``digits-unet``: the embedded text-conditioned UNet diffusion model (diffusers, pixel space).

A :class:`~bench.models.digits.unet_pipeline.DigitsPipeline` (1.7M-parameter
``UNet2DConditionModel`` + 2-layer CLIP text encoder + word-level tokenizer + DDIM) trained on
the ``generator`` split of the handwritten digits with
``python -m bench.models.digits.training.train_digits_unet``; weights ship as safetensors in
``bench/models/weights/digits-unet/`` and load offline in well under a second.

:class:`DigitsUNet` is also the base of ``digits-dit`` (:mod:`bench.models.digits.dit`): the two
differ only in the pipeline attribute that holds the denoiser (:attr:`DigitsUNet.roles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.core.kinds import ModelKind
from bench.models.base import ReferenceModel, StepCallback
from bench.models.digits import WEIGHTS_ROOT, training_command
from bench.models.digits.domain import DigitsDomain, quiet_loading
from bench.models.digits.unet_pipeline import DigitsPipeline

WEIGHTS_DIR = WEIGHTS_ROOT / "digits-unet"
TRAIN_COMMAND = training_command("train_digits_unet")

#: Default generation settings (the training script reports adherence at these).
DEFAULT_CALL_ARGS: dict[str, Any] = {"num_inference_steps": 25, "guidance_scale": 3.0}


@dataclass
class DigitsUNet(DigitsDomain, ReferenceModel):
    """The embedded ``digits-unet`` reference model around a :class:`DigitsPipeline`.

    Attributes:
        pipe: the diffusers pipeline (``unet``, ``text_encoder``, ``tokenizer``, ``scheduler``);
            strategies may swap its scheduler or change its modules.
    """

    pipe: Any = field(default=None, repr=False)

    #: Roles of :meth:`components` -> attribute of the pipeline.
    roles: ClassVar[dict[str, str]] = {"denoiser": "unet", "text_encoder": "text_encoder"}
    #: What :func:`load_digits` loads: the registry name and kind, the pipeline class, where
    #: its weights ship and the command that trains them.
    model_name: ClassVar[str] = "digits-unet"
    model_kind: ClassVar[ModelKind] = ModelKind.UNET
    pipeline_class: ClassVar[type] = DigitsPipeline
    weights_dir: ClassVar[Path] = WEIGHTS_DIR
    train_command: ClassVar[str] = TRAIN_COMMAND
    default_call_args: ClassVar[dict[str, Any]] = DEFAULT_CALL_ARGS

    # -- generation -------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], seeds: Sequence[int],
                 step_callback: StepCallback | None = None, **call_args: Any) -> torch.Tensor:
        """One image per (prompt, seed), float NCHW in [0, 1] on the CPU.

        Each image's noise comes from its own ``torch.Generator(device="cpu")`` seeded with
        its seed, so the result does not depend on the other images of the batch.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        if not prompts:
            return torch.empty(0, *self.sample_shape)
        args = {**self.call_args, **call_args}
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        callback = None
        if step_callback is not None:
            def callback(pipe: Any, i: int, t: Any, callback_kwargs: dict) -> dict:
                step_callback(i)
                return {}

        with torch.no_grad():
            out = self.pipe(
                prompt=list(prompts),
                generator=generators,
                callback_on_step_end=callback,
                output_type="pt",
                **args,
            )
        frames = getattr(out, "frames", None)  # a video pipeline's output
        return (frames if frames is not None else out.images).float().cpu()

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one generated sample: (1, 16, 16), or (T, 1, 16, 16) for a video."""
        frames = self.frames_per_video
        return (1, 16, 16) if frames is None else (frames, 1, 16, 16)

    # -- what strategies may change ----------------------------------------------------
    def components(self) -> dict[str, torch.nn.Module]:
        return {role: getattr(self.pipe, attr) for role, attr in self.roles.items()}

    def set_component(self, role: str, module: torch.nn.Module) -> None:
        if role not in self.roles:
            raise KeyError(f"{self.name} has no component {role!r}; it has {sorted(self.roles)}")
        setattr(self.pipe, self.roles[role], module)


def load_digits_pipeline(
    model_class: type[DigitsUNet], directory: str | Path | None, device: str | torch.device,
) -> Any:
    """Load the shipped pipeline of ``model_class`` from ``directory`` (default: its shipped
    weights; float32, offline, safetensors only), the networks in eval mode.

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    directory = Path(directory) if directory is not None else model_class.weights_dir
    if not (directory / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{model_class.model_name} weights not found in {directory}; train them with "
            f"`{model_class.train_command}`"
        )
    with quiet_loading():
        pipe = model_class.pipeline_class.from_pretrained(
            str(directory), dtype=torch.float32, use_safetensors=True, local_files_only=True
        )
    pipe.set_progress_bar_config(disable=True)
    for attr in model_class.roles.values():
        getattr(pipe, attr).eval()
    return pipe.to(device)


def load_digits(model_class: type[DigitsUNet], device: str, directory: str | Path | None) -> Any:
    """The embedded model of ``model_class`` around its shipped pipeline (see
    :func:`load_digits_pipeline`), with its default call arguments."""
    return model_class(
        name=model_class.model_name,
        kind=model_class.model_kind,
        device=torch.device(device),
        dtype=torch.float32,
        call_args=dict(model_class.default_call_args),
        pipe=load_digits_pipeline(model_class, directory, device),
    )


def load_pipeline(
    directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> DigitsPipeline:
    """Load the shipped :class:`DigitsPipeline` (float32, offline, safetensors only)."""
    return load_digits_pipeline(DigitsUNet, directory, device)


def load(device: str = "cpu", directory: str | Path | None = None) -> DigitsUNet:
    """Load ``digits-unet`` from the weights shipped in the package (seconds, offline).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    return load_digits(DigitsUNet, device, directory)


__all__ = ["DEFAULT_CALL_ARGS", "TRAIN_COMMAND", "WEIGHTS_DIR", "DigitsUNet", "load",
           "load_digits", "load_digits_pipeline", "load_pipeline"]
