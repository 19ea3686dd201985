"""Parameters and FLOPs per step, against a count made by hand."""

from __future__ import annotations

import pytest
import torch

from bench.measure import flops


class Model:
    """Three steps of a 32x64 linear layer on one image: 2*32*64 FLOPs a step."""

    steps = 3

    def __init__(self):
        self.net = torch.nn.Linear(32, 64)

    def parameter_count(self):
        return sum(p.numel() for p in self.net.parameters())

    def components(self):
        return {"denoiser": self.net}

    def generate(self, prompts, seeds, step_callback=None):
        x = torch.zeros(len(prompts), 32)
        for _ in range(self.steps):
            y = self.net(x)
        return y


def test_flops_per_step_match_a_hand_count():
    size = flops.count(Model(), "a prompt")
    assert size.params == 32 * 64 + 64
    assert size.flops_per_image == 3 * 2 * 32 * 64
    assert size.flops_per_step == 2 * 32 * 64 and size.per == "step"


def test_a_compiled_or_failing_model_says_why():
    model = Model()
    model.net._orig_mod = object()  # what torch.compile's wrapper carries
    assert flops.count(model, "p").method.startswith("unavailable: compiled graphs")

    class Broken(Model):
        def generate(self, prompts, seeds, step_callback=None):
            raise RuntimeError("no")

    size = flops.count(Broken(), "p")
    assert size.flops_per_step is None and "RuntimeError: no" in size.method


class Pipeline(Model):
    """Model's three steps, plus a text encoder (two calls, as with guidance) and a decoder
    reached through a method that is not its forward, as diffusers' ``vae.decode``."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(8, 32)

        class Decoder(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.post = torch.nn.Linear(64, 16)

            def decode(self, x):
                return self.post(x)

        self.decoder = Decoder()

    def components(self):
        return {"denoiser": self.net, "text_encoder": self.encoder, "decoder": self.decoder}

    def generate(self, prompts, seeds, step_callback=None):
        x = self.encoder(torch.zeros(len(prompts), 8)) + self.encoder(torch.ones(len(prompts), 8))
        for _ in range(self.steps):
            y = self.net(x)
        return self.decoder.decode(y)


def test_the_once_per_call_encoder_and_decoder_are_counted_apart_from_the_steps():
    size = flops.count(Pipeline(), "a prompt")
    encoder, decoder, step = 2 * (2 * 8 * 32), 2 * 64 * 16, 2 * 32 * 64
    assert size.flops_by_component == {"text_encoder": encoder, "decoder": decoder,
                                       "denoiser": 3 * step}
    assert size.flops_once == encoder + decoder
    assert size.flops_per_step == step  # not (3 * step + encoder + decoder) / 3
    assert size.flops_per_image == 3 * step + encoder + decoder


def test_digits_unet_per_step_flops_leave_out_the_text_encoder(digits_unet):
    """On the embedded model: steps x per-step + once = the whole call; the per-step figure is
    what one more step adds (an independent count), and the text encoder is not in it."""
    sizes = {}
    for steps in (2, 4):
        model = digits_unet.clone()
        model.call_args["num_inference_steps"] = steps
        sizes[steps] = flops.count(model, model.prompts(1)[0][0])
    two, four = sizes[2], sizes[4]
    for n, size in sizes.items():
        assert size.per == "step" and size.flops_once > 0 and size.flops_by_component["text_encoder"] > 0
        assert size.flops_per_step * n + size.flops_once == pytest.approx(size.flops_per_image)
    assert two.flops_once == four.flops_once  # the encoder runs once per call, whatever the steps
    added_per_step = (four.flops_per_image - two.flops_per_image) / 2
    assert four.flops_per_step == pytest.approx(added_per_step)
    assert two.flops_per_step == pytest.approx(added_per_step)
    assert four.flops_per_step < four.flops_per_image / 4  # the old figure held the encoder too
