"""The diffusers-pipeline wrapper (``HubModel``): component roles, modules without a truth
value (compiled ones), and the step callback on old- and new-style pipelines."""

from __future__ import annotations

import pytest
import torch

from bench.models.hub import HubModel, denoiser_of, step_callback_args
from strategies import parse_stack
from tests.support.arch import generate, tiny


class _NoLen(torch.nn.Module):
    """A module whose truth value cannot be taken, like a compiled UNet2DConditionModel."""

    def __len__(self):
        raise TypeError("UNet2DConditionModel does not support len()")


class _Pipe:
    def __init__(self, unet=None, transformer=None):
        self.unet, self.transformer = unet, transformer


def test_denoiser_is_found_without_taking_a_modules_truth_value():
    unet, transformer = _NoLen(), torch.nn.Linear(2, 2)
    assert denoiser_of(_Pipe(unet=unet)) is unet
    assert denoiser_of(_Pipe(transformer=transformer)) is transformer
    assert denoiser_of(_Pipe()) is None
    model = HubModel(name="hf:x", kind="diffusion-unet", device=torch.device("cpu"),
                     pipe=_Pipe(unet=unet))
    assert model.components()["denoiser"] is unet


def test_compiled_unet_keeps_its_role():
    """Regression: after compile, components() used to raise "does not support len()"."""
    model = parse_stack("compile:backend=eager").apply(tiny("sd15").clone())
    assert type(model.components()["denoiser"]).__name__ == "OptimizedModule"
    assert set(model.components()) == {"denoiser", "text_encoder", "decoder"}


def test_every_text_encoder_is_a_component():
    roles = set(tiny("sd3").components())
    assert roles == {"denoiser", "text_encoder", "text_encoder_2", "text_encoder_3", "decoder"}
    model = tiny("flux").clone()
    encoder = torch.nn.Linear(1, 1)
    model.set_component("text_encoder_2", encoder)
    assert model.pipe.text_encoder_2 is encoder
    with pytest.raises(KeyError):
        model.set_component("vocoder", encoder)


def test_step_callback_reaches_old_and_new_style_pipelines():
    seen: list[int] = []
    new_style = step_callback_args(tiny("sd3").pipe, seen.append)
    assert set(new_style) == {"callback_on_step_end"}
    old_style = step_callback_args(tiny("pixart-sigma").pipe, seen.append)
    assert old_style["callback_steps"] == 1 and "callback" in old_style
    assert step_callback_args(tiny("sd3").pipe, None) == {}
    steps: list[int] = []
    generate(tiny("pixart-sigma"), 2, step_callback=steps.append)
    assert steps == [0, 1]
