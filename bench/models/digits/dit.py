"""``digits-dit``: the embedded text-conditioned transformer (DiT) diffusion model.

A :class:`~bench.models.digits_dit_pipeline.DigitsDiTPipeline` (diffusers' PixArt transformer,
patch 2 on 16 x 16 pixels = 64 tokens, cross-attention to a 2-layer CLIP text encoder; DDIM,
v-prediction) trained on the ``generator`` split of the handwritten digits with
``python -m bench.training.train_digits_dit``; weights ship as safetensors in
``bench/models/weights/digits-dit/`` and load offline in about a second.

Everything but the denoiser is shared with ``digits-unet``: prompts, data, the classifier,
generation (:class:`~bench.models.digits_unet.DigitsUNet`), so the two are measured alike.
The strategies that only apply to transformers (diffusers' cache hooks) use ``kind ==
"diffusion-dit"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.models.digits_unet import DigitsUNet, quiet_loading

WEIGHTS_DIR = Path(__file__).parent / "weights" / "digits-dit"
TRAIN_COMMAND = "python -m bench.training.train_digits_dit"

#: Default generation settings (the training script reports adherence at these).
DEFAULT_CALL_ARGS: dict[str, Any] = {"num_inference_steps": 25, "guidance_scale": 3.0}

#: Roles of :meth:`DigitsDiT.components` -> attribute of the pipeline.
_ROLES = {"denoiser": "transformer", "text_encoder": "text_encoder"}


@dataclass
class DigitsDiT(DigitsUNet):
    """The embedded ``digits-dit`` reference model around a :class:`DigitsDiTPipeline`.

    Generation, prompts, data and the classifier are :class:`DigitsUNet`'s; only the
    components differ (``denoiser`` is the pipeline's ``transformer``).
    """

    def components(self) -> dict[str, torch.nn.Module]:
        return {role: getattr(self.pipe, attr) for role, attr in _ROLES.items()}

    def set_component(self, role: str, module: torch.nn.Module) -> None:
        if role not in _ROLES:
            raise KeyError(f"{self.name} has no component {role!r}; it has {sorted(_ROLES)}")
        setattr(self.pipe, _ROLES[role], module)


def load_pipeline(directory: str | Path | None = None, device: str | torch.device = "cpu"):
    """Load the shipped :class:`DigitsDiTPipeline` (float32, offline, safetensors only)."""
    from bench.models.digits_dit_pipeline import DigitsDiTPipeline

    directory = Path(directory) if directory is not None else WEIGHTS_DIR
    if not (directory / "model_index.json").is_file():
        raise FileNotFoundError(
            f"digits-dit weights not found in {directory}; train them with `{TRAIN_COMMAND}`"
        )
    with quiet_loading():
        pipe = DigitsDiTPipeline.from_pretrained(
            str(directory), dtype=torch.float32, use_safetensors=True, local_files_only=True
        )
    pipe.set_progress_bar_config(disable=True)
    pipe.transformer.eval()
    pipe.text_encoder.eval()
    return pipe.to(device)


def load(device: str = "cpu", directory: str | Path | None = None) -> DigitsDiT:
    """Load ``digits-dit`` from the weights shipped in the package (seconds, offline).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    pipe = load_pipeline(directory, device)
    return DigitsDiT(
        name="digits-dit",
        kind="diffusion-dit",
        device=torch.device(device),
        dtype=torch.float32,
        call_args=dict(DEFAULT_CALL_ARGS),
        pipe=pipe,
    )
