"""Parameters and FLOPs per step, against a count made by hand."""

from __future__ import annotations

import torch

from bench import flops


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
