"""``digits-dit``: the embedded text-conditioned transformer (DiT) diffusion model.

A :class:`~bench.models.digits.dit_pipeline.DigitsDiTPipeline` (diffusers' PixArt transformer,
patch 2 on 16 x 16 pixels = 64 tokens, cross-attention to a 2-layer CLIP text encoder; DDIM,
v-prediction) trained on the ``generator`` split of the handwritten digits with
``python -m bench.models.digits.training.train_digits_dit``; weights ship as safetensors in
``bench/models/weights/digits-dit/`` and load offline in about a second.

Everything but the denoiser is shared with ``digits-unet``: prompts, data, the classifier,
generation (:class:`~bench.models.digits.unet.DigitsUNet`), so the two are measured alike.
The strategies that only apply to transformers (diffusers' cache hooks) use ``kind ==
ModelKind.DIT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.core.kinds import ModelKind

# The shipped weights' model_index.json names this module for their transformer, and diffusers
# loads only from modules already imported: keep it imported wherever digits-dit loads.
from bench.models import digits_dit_pipeline  # noqa: F401
from bench.models.digits import WEIGHTS_ROOT, training_command
from bench.models.digits.dit_pipeline import DigitsDiTPipeline
from bench.models.digits.unet import DigitsUNet, load_digits, load_digits_pipeline

WEIGHTS_DIR = WEIGHTS_ROOT / "digits-dit"
TRAIN_COMMAND = training_command("train_digits_dit")

#: Default generation settings (the training script reports adherence at these).
DEFAULT_CALL_ARGS: dict[str, Any] = {"num_inference_steps": 25, "guidance_scale": 3.0}


@dataclass
class DigitsDiT(DigitsUNet):
    """The embedded ``digits-dit`` reference model around a :class:`DigitsDiTPipeline`.

    Generation, prompts, data and the classifier are :class:`DigitsUNet`'s; only the
    components differ (``denoiser`` is the pipeline's ``transformer``).
    """

    roles: ClassVar[dict[str, str]] = {"denoiser": "transformer", "text_encoder": "text_encoder"}
    model_name: ClassVar[str] = "digits-dit"
    model_kind: ClassVar[ModelKind] = ModelKind.DIT
    pipeline_class: ClassVar[type] = DigitsDiTPipeline
    weights_dir: ClassVar[Path] = WEIGHTS_DIR
    train_command: ClassVar[str] = TRAIN_COMMAND
    default_call_args: ClassVar[dict[str, Any]] = DEFAULT_CALL_ARGS


def load_pipeline(
    directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> DigitsDiTPipeline:
    """Load the shipped :class:`DigitsDiTPipeline` (float32, offline, safetensors only)."""
    return load_digits_pipeline(DigitsDiT, directory, device)


def load(device: str = "cpu", directory: str | Path | None = None) -> DigitsDiT:
    """Load ``digits-dit`` from the weights shipped in the package (seconds, offline).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    return load_digits(DigitsDiT, device, directory)


__all__ = ["DEFAULT_CALL_ARGS", "TRAIN_COMMAND", "WEIGHTS_DIR", "DigitsDiT", "load", "load_pipeline"]
