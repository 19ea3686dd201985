"""Small, randomly initialised digits models for strategy tests: the real pipelines and
diffusers modules of ``digits-dit`` and ``digits-unet``, with fewer steps and (for the DiT)
fewer, narrower blocks, so tests do not depend on the shipped weights or their quality."""

from __future__ import annotations

import torch


def _wrap(model_class, name: str, kind: str, pipe, denoiser, steps: int, guidance: float):
    """An untrained pipeline as a reference model, in eval mode and without progress bars."""
    pipe.set_progress_bar_config(disable=True)
    denoiser.eval()
    pipe.text_encoder.eval()
    return model_class(name=name, kind=kind, device=torch.device("cpu"),
                       call_args={"num_inference_steps": steps, "guidance_scale": guidance}, pipe=pipe)


def tiny_dit(steps: int = 6, guidance: float = 3.0, width: int = 32, layers: int = 3):
    """A ``DigitsDiT`` around an untrained ``DigitsDiTPipeline`` (PixArt transformer)."""
    from bench.models.digits.dit import DigitsDiT
    from bench.models.digits.dit_pipeline import build_dit_pipeline

    pipe = build_dit_pipeline(seed=0, width=width, num_layers=layers, num_heads=2)
    return _wrap(DigitsDiT, "tiny-dit", "diffusion-dit", pipe, pipe.transformer, steps, guidance)


def tiny_unet(steps: int = 6, guidance: float = 3.0):
    """A ``DigitsUNet`` around an untrained ``DigitsPipeline`` (the real UNet architecture)."""
    from bench.models.digits.unet import DigitsUNet
    from bench.models.digits.unet_pipeline import build_pipeline

    pipe = build_pipeline(seed=0)
    return _wrap(DigitsUNet, "tiny-unet", "diffusion-unet", pipe, pipe.unet, steps, guidance)


PROMPTS = ["a handwritten 1", "a handwritten 7"]
SEEDS = [0, 1]


def count_calls(module: torch.nn.Module) -> list[int]:
    """A one-element list counting ``module``'s forward calls (a plain torch forward hook)."""
    counter = [0]

    def hook(*_):
        counter[0] += 1

    module.register_forward_hook(hook)
    return counter
