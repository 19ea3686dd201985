"""Fewer denoising steps: the oldest trade of quality for speed in diffusion sampling."""

from __future__ import annotations

from dataclasses import dataclass

from strategies.core.base import Strategy, StrategyConfig, param


@dataclass(frozen=True)
class Config(StrategyConfig):
    """How many denoising steps to run instead of the model's default."""

    n: int = param(10, "number of denoising steps", low=1, high=1000, below_model="steps")

    always_show = ("n",)


class FewerSteps(Strategy):
    """Run the sampler for ``n`` steps instead of the default."""

    name = "steps"
    summary = "run fewer denoising steps (n=10 by default)"
    Config = Config
    stage = Strategy.STAGE_SAMPLING
    exclusive_group = "step count"

    def supports(self, model) -> str | None:
        if "num_inference_steps" not in model.call_args:
            return (
                f"{model.name} ({model.kind}) has no denoising step count to change: "
                "an autoregressive model makes one step per image token"
            )
        return super().supports(model)

    def same_as_baseline(self, model) -> str | None:
        if model.call_args.get("num_inference_steps") == self.config.n:
            return f"{model.name} already runs {self.config.n} denoising steps"
        return None

    def apply(self, model):
        model.call_args["num_inference_steps"] = self.config.n
        return model
