"""What every diffusers text-to-image denoiser shares: the training objective and fusion.

The task loss is the one the embedded models were trained with
(``bench/models/digits/training/train_digits_unet.py``): noise added with the pipeline's own noise schedule
(diffusers' ``DDPMScheduler.add_noise``), the target the schedule's ``prediction_type`` asks for
(``epsilon``, ``v_prediction`` via ``get_velocity``, or ``sample``), 10% of the prompts replaced
by the empty prompt so the unconditional branch of classifier-free guidance is trained too,
and min-SNR-gamma loss weighting normalised to a mean weight of 1. The training script keeps
its loss inline in ``main()``, so it cannot be imported; this is the same objective written
against diffusers' scheduler functions.

Subclasses (the UNet and DiT adapters) say how the denoiser is called
(:meth:`DiffusionAdapter.denoiser_inputs`) and what may be removed or pruned.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from strategies.adapters.base import ModelAdapter, TrainBatch
from strategies.core.base import StrategyError
from strategies.fusion import FusedDenoiser


class DiffusionAdapter(ModelAdapter):
    """Training and fusion for pixel-space diffusers pipelines with a text encoder."""

    #: Fraction of training prompts replaced by the empty prompt (classifier-free guidance).
    prompt_dropout: ClassVar[float] = 0.1
    #: min-SNR-gamma weighting (Hang et al. 2023), as in the training scripts.
    min_snr_gamma: ClassVar[float] = 5.0

    def __init__(self, model) -> None:
        super().__init__(model)
        self._embeds: dict[str, torch.Tensor] = {}
        self._train_scheduler = None

    @property
    def pipe(self) -> Any:
        return self.model.pipe

    def training_reason(self) -> str | None:
        pipe = self.pipe
        if pipe is None or not hasattr(pipe, "scheduler") or not hasattr(pipe, "encode_prompt"):
            return f"{self.model.name} has no diffusers pipeline with a scheduler and a prompt encoder"
        if getattr(pipe, "vae", None) is not None:
            return (
                f"{self.model.name} denoises in a VAE's latent space; training through a VAE "
                "is not implemented by this adapter (only pixel-space pipelines)"
            )
        prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction", "sample"):
            return f"unknown prediction type {prediction!r} of {self.model.name}'s scheduler"
        return super().training_reason()

    # -- the denoiser's inputs -------------------------------------------------------------
    def denoiser_inputs(
        self, sample: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor
    ) -> dict[str, Any]:
        """Keyword arguments of the denoiser's forward (UNet names by default)."""
        return {
            "sample": sample,
            "timestep": timestep,
            "encoder_hidden_states": embeds,
            "return_dict": False,
        }

    def sample_shape(self, module: nn.Module) -> tuple[int, int, int]:
        """(channels, height, width) of the denoiser's input."""
        config = module.config
        size = int(config.sample_size)
        return int(config.in_channels), size, size

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings from the model's frozen text encoder (cached per prompt)."""
        missing = sorted({p for p in prompts if p not in self._embeds})
        if missing:
            with torch.no_grad():
                embeds, _ = self.pipe.encode_prompt(
                    missing, device=self.model.device, do_classifier_free_guidance=False
                )
            for p, e in zip(missing, embeds, strict=True):
                self._embeds[p] = e.detach()
        return torch.stack([self._embeds[p] for p in prompts])

    def example_inputs(self, module: nn.Module, batch_size: int = 1) -> dict[str, Any]:
        """Noise, a mid-range timestep and real prompt embeddings (seeded)."""
        gen = torch.Generator().manual_seed(0)
        c, h, w = self.sample_shape(module)
        sample = torch.randn(batch_size, c, h, w, generator=gen).to(self.model.device)
        prompts, _ = self.model.prompts(batch_size)
        embeds = self.encode_prompts(prompts)
        timestep = torch.full((batch_size,), 500, dtype=torch.long, device=self.model.device)
        return self.denoiser_inputs(sample, timestep, embeds)

    # -- the task --------------------------------------------------------------------------
    def noise_scheduler(self) -> Any:
        """The training-time view of the pipeline's noise schedule: a diffusers
        ``DDPMScheduler`` built from the pipeline scheduler's config (``alphas_cumprod``,
        ``prediction_type``, ``add_noise``)."""
        return self._scheduler()

    def _scheduler(self):
        if self._train_scheduler is None:
            from diffusers import DDPMScheduler

            # The training-time view of the pipeline's noise schedule (betas, prediction type).
            self._train_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        return self._train_scheduler

    def make_batch(
        self, images: torch.Tensor, prompts: list[str], generator: torch.Generator
    ) -> TrainBatch:
        sched = self._scheduler()
        n = images.shape[0]
        device = self.model.device
        x0 = (images.float() * 2.0 - 1.0).to(device)
        drop = torch.rand(n, generator=generator) < self.prompt_dropout
        prompts = ["" if d else p for p, d in zip(prompts, drop.tolist(), strict=True)]
        embeds = self.encode_prompts(prompts)
        steps = int(sched.config.num_train_timesteps)
        t = torch.randint(0, steps, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t_dev = t.to(device)
        x_t = sched.add_noise(x0, noise, t_dev)
        prediction = sched.config.prediction_type
        if prediction == "v_prediction":
            target = sched.get_velocity(x0, noise, t_dev)
        elif prediction == "sample":
            target = x0
        else:
            target = noise
        alphas = sched.alphas_cumprod.to(device)[t_dev].float()
        snr = alphas / (1 - alphas)
        clipped = torch.clamp(snr, max=self.min_snr_gamma)
        if prediction == "v_prediction":
            weight = clipped / (snr + 1)
        elif prediction == "sample":
            weight = clipped
        else:
            weight = clipped / snr
        return TrainBatch(
            inputs=self.denoiser_inputs(x_t, t_dev, embeds), target=target, weight=weight
        )

    def task_loss(self, output: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        per_example = F.mse_loss(output.float(), batch.target, reduction="none")
        per_example = per_example.flatten(1).mean(dim=1)
        if batch.weight is None:
            return per_example.mean()
        weight = batch.weight
        # min-SNR weighting, normalised so the mean weight is 1 (as in the training scripts).
        return (per_example * weight).mean() / weight.mean().detach()

    # -- structural pruning ----------------------------------------------------------------
    @staticmethod
    def prune_attention(
        attn: nn.Module, attention: str, ignored: list[Any], num_heads: dict[nn.Module, int]
    ) -> None:
        """How one diffusers ``Attention`` is pruned: its q/k/v projections left whole
        (``attention="ignore"``: added to ``ignored``) or their head dimensions pruned alike in
        every head (``"heads"``: their head count in ``num_heads``)."""
        projections = [attn.to_q, attn.to_k, attn.to_v]
        if attention == "ignore":
            ignored.extend(projections)
        elif attention == "heads":
            for layer in projections:
                num_heads[layer] = attn.heads
        else:
            raise StrategyError(f"attention must be 'heads' or 'ignore', got {attention!r}")

    @staticmethod
    def attention_note(n_attn: int, attention: str) -> str:
        """The notes' line on how the ``n_attn`` attention layers were pruned."""
        how = (
            "head dimensions pruned alike in every head (q, k, v, to_out input)"
            if attention == "heads"
            else "q/k/v projections left whole"
        )
        return f"{n_attn} attention layers: {how}"

    # -- fusion ----------------------------------------------------------------------------
    def fuse(
        self, teacher: nn.Module, student: nn.Module, split: float | None, weight: float | None
    ) -> nn.Module:
        return FusedDenoiser(teacher, student, split=split, weight=weight, pipe=self.pipe)
