"""Small, randomly initialised digits models for strategy tests: the real pipelines and
diffusers modules of ``digits-dit`` and ``digits-unet``, with fewer steps and (for the DiT)
fewer, narrower blocks, so tests do not depend on the shipped weights or their quality."""

from __future__ import annotations

import torch


def tiny_dit(steps: int = 6, guidance: float = 3.0, width: int = 32, layers: int = 3):
    """A ``DigitsDiT`` around an untrained ``DigitsDiTPipeline`` (PixArt transformer)."""
    from bench.models.digits_dit import DigitsDiT
    from bench.models.digits_dit_pipeline import build_dit_pipeline

    pipe = build_dit_pipeline(seed=0, width=width, num_layers=layers, num_heads=2)
    pipe.set_progress_bar_config(disable=True)
    pipe.transformer.eval()
    pipe.text_encoder.eval()
    return DigitsDiT(
        name="tiny-dit",
        kind="diffusion-dit",
        device=torch.device("cpu"),
        call_args={"num_inference_steps": steps, "guidance_scale": guidance},
        pipe=pipe,
    )


def tiny_unet(steps: int = 6, guidance: float = 3.0):
    """A ``DigitsUNet`` around an untrained ``DigitsPipeline`` (the real UNet architecture)."""
    from bench.models.digits_pipeline import build_pipeline
    from bench.models.digits_unet import DigitsUNet

    pipe = build_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return DigitsUNet(
        name="tiny-unet",
        kind="diffusion-unet",
        device=torch.device("cpu"),
        call_args={"num_inference_steps": steps, "guidance_scale": guidance},
        pipe=pipe,
    )


PROMPTS = ["a handwritten 1", "a handwritten 7"]
SEEDS = [0, 1]


def count_calls(module: torch.nn.Module) -> list[int]:
    """A one-element list counting ``module``'s forward calls (a plain torch forward hook)."""
    counter = [0]

    def hook(*_):
        counter[0] += 1

    module.register_forward_hook(hook)
    return counter
