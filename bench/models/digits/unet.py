"""``digits-unet``: the embedded text-conditioned UNet diffusion model (diffusers, pixel space).

A :class:`~bench.models.digits_pipeline.DigitsPipeline` (1.7M-parameter
``UNet2DConditionModel`` + 2-layer CLIP text encoder + word-level tokenizer + DDIM) trained on
the ``generator`` split of the handwritten digits with
``python -m bench.training.train_digits_unet``; weights ship as safetensors in
``bench/models/weights/digits-unet/`` and load offline in well under a second.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.models.base import ReferenceModel, StepCallback

WEIGHTS_DIR = Path(__file__).parent / "weights" / "digits-unet"
TRAIN_COMMAND = "python -m bench.training.train_digits_unet"

#: Default generation settings (the training script reports adherence at these).
DEFAULT_CALL_ARGS: dict[str, Any] = {"num_inference_steps": 25, "guidance_scale": 3.0}

#: Roles of :meth:`DigitsUNet.components` -> attribute of the pipeline.
_ROLES = {"denoiser": "unet", "text_encoder": "text_encoder"}


@dataclass
class DigitsUNet(ReferenceModel):
    """The embedded ``digits-unet`` reference model around a :class:`DigitsPipeline`.

    Attributes:
        pipe: the diffusers pipeline (``unet``, ``text_encoder``, ``tokenizer``, ``scheduler``);
            strategies may swap its scheduler or change its modules.
    """

    pipe: Any = field(default=None, repr=False)
    _classifier: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    # -- generation -------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        step_callback: StepCallback | None = None,
        **call_args: Any,
    ) -> torch.Tensor:
        """One image per (prompt, seed), float NCHW in [0, 1] on the CPU.

        Each image's noise comes from its own ``torch.Generator(device="cpu")`` seeded with
        its seed, so the result does not depend on the other images of the batch.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        if not prompts:
            return torch.empty(0, 1, 16, 16)
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
        return out.images.float().cpu()

    # -- what strategies may change ----------------------------------------------------
    def components(self) -> dict[str, torch.nn.Module]:
        return {role: getattr(self.pipe, attr) for role, attr in _ROLES.items()}

    def set_component(self, role: str, module: torch.nn.Module) -> None:
        if role not in _ROLES:
            raise KeyError(f"{self.name} has no component {role!r}; it has {sorted(_ROLES)}")
        setattr(self.pipe, _ROLES[role], module)

    # -- data --------------------------------------------------------------------------
    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        from bench.data import balanced_labels, prompt_for

        labels = balanced_labels(n)
        return [prompt_for(d) for d in labels], labels

    def real_images(self, split: str = "heldout") -> torch.Tensor:
        from bench.data import load_split

        return torch.from_numpy(load_split(split).images.copy())  # type: ignore[arg-type]

    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Endless shuffled batches of the ``generator`` split: (images in [0, 1], prompts)."""
        return digits_batches("generator", batch_size, seed)

    def classifier(self) -> torch.nn.Module | None:
        if self._classifier is None:
            from bench.models.classifier import load_classifier

            self._classifier = load_classifier(self.device)
        return self._classifier


def digits_batches(
    split: str, batch_size: int, seed: int = 0
) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Endless batches of one split, reshuffled every epoch with a seeded generator."""
    from bench.data import load_split, prompt_for

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data = load_split(split)  # type: ignore[arg-type]
    images = torch.from_numpy(data.images.copy())
    labels = data.labels
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    pos = 0
    while True:
        idx = []
        while len(idx) < batch_size:
            if pos == len(order):
                order, pos = rng.permutation(len(labels)), 0
            take = min(batch_size - len(idx), len(order) - pos)
            idx.extend(order[pos : pos + take].tolist())
            pos += take
        yield images[idx], [prompt_for(int(labels[i])) for i in idx]


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' progress bars and info logs while loading."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    d_level, t_level = dlog.get_verbosity(), tlog.get_verbosity()
    d_bar, t_bar = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(d_level)
        tlog.set_verbosity(t_level)
        if d_bar:
            dlog.enable_progress_bar()
        if t_bar:
            tlog.enable_progress_bar()


def load_pipeline(directory: str | Path | None = None, device: str | torch.device = "cpu"):
    """Load the shipped :class:`DigitsPipeline` (float32, offline, safetensors only)."""
    from bench.models.digits_pipeline import DigitsPipeline

    directory = Path(directory) if directory is not None else WEIGHTS_DIR
    if not (directory / "model_index.json").is_file():
        raise FileNotFoundError(
            f"digits-unet weights not found in {directory}; train them with `{TRAIN_COMMAND}`"
        )
    with quiet_loading():
        pipe = DigitsPipeline.from_pretrained(
            str(directory), dtype=torch.float32, use_safetensors=True, local_files_only=True
        )
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return pipe.to(device)


def load(device: str = "cpu", directory: str | Path | None = None) -> DigitsUNet:
    """Load ``digits-unet`` from the weights shipped in the package (seconds, offline).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    pipe = load_pipeline(directory, device)
    return DigitsUNet(
        name="digits-unet",
        kind="diffusion-unet",
        device=torch.device(device),
        dtype=torch.float32,
        call_args=dict(DEFAULT_CALL_ARGS),
        pipe=pipe,
    )
