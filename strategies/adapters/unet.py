"""The adapter for diffusers' ``UNet2DConditionModel`` (model kind ``diffusion-unet``).

Students (BK-SDM, Kim et al. 2023): BK-SDM removes residual/attention pairs from each stage
and, in its smaller variants, the mid block and the innermost stage. A UNet with one resnet
per down stage (``digits-unet``) has no pair to spare in the down path, and an up block
cannot lose a resnet without the skip connection it consumes, so the blocks that can go are:

* ``mid``: the mid block (BK-SDM-Small);
* ``inner``: the innermost resolution level, its down and up block (as BK-SDM-Tiny drops the
  innermost stage). The remaining blocks keep their shapes, so every weight of the student is
  copied from the teacher: down block i from down block i, up block j from up block j + 1.

Feature distillation compares, at matched positions, the output of each down block's last
layer before its downsampler (the skip feature, the same resolution in teacher and student),
the mid block's (where both have it at the same resolution) and each up block's.

Structural pruning (Diff-Pruning's recipe, Fang et al. 2023): channels are removed with
torch-pruning's dependency graph, which keeps skip connections (``torch.cat``) and residual
additions consistent and prunes GroupNorm channels group by group so the group count still
divides the channel count. The output convolution is never pruned. Attention is either pruned
by head dimension (the same dimensions from every head of q, k and v, and from to_out's input)
or left whole. Afterwards the down/upsamplers' cached channel counts are updated.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, ClassVar

import torch
from torch import nn

from bench.core.kinds import ModelKind
from strategies.adapters.base import PruneSetup, Student
from strategies.adapters.diffusion import DiffusionAdapter
from strategies.core.base import StrategyError

#: Per-block config entries that list one value per down block (trimmed with ``inner``).
_PER_DOWN_BLOCK = (
    "layers_per_block",
    "attention_head_dim",
    "num_attention_heads",
    "transformer_layers_per_block",
    "cross_attention_dim",
    "only_cross_attention",
)


class UNetAdapter(DiffusionAdapter):
    """Students, pruning and features of a diffusers ``UNet2DConditionModel``."""

    kind = ModelKind.UNET
    drop_choices: ClassVar[dict[str, str]] = {
        "mid": "the mid block (BK-SDM-Small)",
        "inner": "the innermost resolution level: its down and up block (BK-SDM-Tiny)",
    }
    default_drop: ClassVar[tuple[str, ...]] = ("inner", "mid")

    def __init__(self, model) -> None:
        super().__init__(model)
        #: Pooled text embeddings per prompt (SDXL), and those of the last encode_prompts call.
        self._pooled: dict[str, torch.Tensor] = {}
        self._last_pooled: torch.Tensor | None = None

    # -- the denoiser's inputs ------------------------------------------------------------
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings from the pipeline's frozen text encoder(s), cached per prompt.

        Works with every ``encode_prompt`` of diffusers' UNet pipelines: Stable Diffusion's
        (``num_images_per_prompt`` positional, two results), SDXL's (four results, the third
        the pooled embedding of its second encoder) and the embedded pipelines'. The pooled
        embeddings of the last call are kept for :meth:`denoiser_inputs` (SDXL's added
        conditioning).
        """
        missing = sorted({p for p in prompts if p not in self._embeds})
        if missing:
            params = inspect.signature(self.pipe.encode_prompt).parameters
            kwargs: dict[str, Any] = {
                "device": self.model.device,
                "do_classifier_free_guidance": False,
            }
            if "num_images_per_prompt" in params:
                kwargs["num_images_per_prompt"] = 1
            with torch.no_grad():
                out = self.pipe.encode_prompt(missing, **kwargs)
            embeds = out[0]
            pooled = out[2] if len(out) >= 4 else None
            for i, p in enumerate(missing):
                self._embeds[p] = embeds[i].detach()
                if pooled is not None:
                    self._pooled[p] = pooled[i].detach()
        self._last_pooled = (
            torch.stack([self._pooled[p] for p in prompts]) if self._pooled else None
        )
        return torch.stack([self._embeds[p] for p in prompts])

    def denoiser_inputs(
        self, sample: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor
    ) -> dict[str, Any]:
        """The UNet's keyword arguments; for SDXL's ``text_time`` added conditioning also the
        pooled text embedding and the six size/crop numbers (original size, crop top-left,
        target size, in pixels: the latent size times the VAE's factor, no crop), as
        ``StableDiffusionXLPipeline`` passes them."""
        inputs = super().denoiser_inputs(sample, timestep, embeds)
        config = self.module().config
        if config.get("addition_embed_type") == "text_time":
            pooled = self._last_pooled
            if pooled is None or pooled.shape[0] != sample.shape[0]:
                raise StrategyError(
                    "this UNet takes SDXL's added conditioning (text_time) but the pipeline "
                    "gave no pooled text embedding"
                )
            factor = int(getattr(self.pipe, "vae_scale_factor", 8))
            h, w = int(sample.shape[-2]) * factor, int(sample.shape[-1]) * factor
            time_ids = torch.tensor([h, w, 0, 0, h, w], dtype=pooled.dtype, device=sample.device)
            inputs["added_cond_kwargs"] = {
                "text_embeds": pooled.to(sample.device),
                "time_ids": time_ids.expand(sample.shape[0], 6),
            }
        return inputs

    def structure_reason(self) -> str | None:
        from diffusers import UNet2DConditionModel

        module = self.module()
        if not isinstance(module, UNet2DConditionModel):
            return (
                f"its denoiser is a {type(module).__name__}, not a diffusers "
                "UNet2DConditionModel (already replaced by another strategy?)"
            )
        return None

    # -- distillation -----------------------------------------------------------------------
    def build_student(self, teacher: nn.Module, drop: tuple[str, ...]) -> Student:
        from diffusers import UNet2DConditionModel

        config = dict(teacher.config)
        n_blocks = len(config["block_out_channels"])
        removed = []
        offset = 0
        if "inner" in drop:
            if n_blocks < 2:
                raise StrategyError("the UNet has a single resolution level: nothing inner to drop")
            config["block_out_channels"] = list(config["block_out_channels"])[:-1]
            config["down_block_types"] = list(config["down_block_types"])[:-1]
            config["up_block_types"] = list(config["up_block_types"])[1:]
            for key in _PER_DOWN_BLOCK:
                value = config.get(key)
                if isinstance(value, (list, tuple)) and len(value) == n_blocks:
                    config[key] = list(value)[:-1]
            reverse = config.get("reverse_transformer_layers_per_block")
            if isinstance(reverse, (list, tuple)) and len(reverse) == n_blocks:
                config["reverse_transformer_layers_per_block"] = list(reverse)[1:]
            offset = 1
            removed.append(f"down_blocks.{n_blocks - 1} and up_blocks.0 (innermost level)")
        if "mid" in drop:
            if config.get("mid_block_type") is None:
                raise StrategyError("the UNet has no mid block to drop")
            config["mid_block_type"] = None
            removed.append("mid_block")
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        student = UNet2DConditionModel.from_config(config)
        reference = next(teacher.parameters())
        student.to(device=reference.device)
        if reference.dtype != next(student.parameters()).dtype:
            student.to(dtype=reference.dtype)

        teacher_state = teacher.state_dict()
        state = student.state_dict()
        copied = 0
        missing = []
        for key, tensor in state.items():
            source = _teacher_key(key, offset)
            if source in teacher_state and teacher_state[source].shape == tensor.shape:
                state[key] = teacher_state[source].detach().clone()
                copied += tensor.numel()
            else:
                missing.append(key)
        student.load_state_dict(state)
        if missing:
            raise StrategyError(
                f"student weights without a teacher counterpart: {missing[:5]} "
                f"({len(missing)} tensors); this UNet layout is not supported"
            )
        return Student(
            module=student,
            feature_pairs=self._feature_pairs(student, offset, "inner" in drop),
            initialised=copied,
            removed=removed,
        )

    @staticmethod
    def _feature_pairs(student: nn.Module, offset: int, inner_dropped: bool) -> list[tuple[str, str]]:
        pairs = []
        for i, block in enumerate(student.down_blocks):
            attentions = getattr(block, "attentions", None)
            if attentions is not None and len(attentions):
                name = f"down_blocks.{i}.attentions.{len(attentions) - 1}"
            else:
                name = f"down_blocks.{i}.resnets.{len(block.resnets) - 1}"
            pairs.append((name, name))
        # Without the inner level the student's mid block works one level up (other shape).
        if student.mid_block is not None and not inner_dropped:
            pairs.append(("mid_block", "mid_block"))
        for j in range(len(student.up_blocks)):
            pairs.append((f"up_blocks.{j}", f"up_blocks.{j + offset}"))
        return pairs

    # -- structural pruning -------------------------------------------------------------
    def prune_setup(self, module: nn.Module, attention: str) -> PruneSetup:
        from diffusers.models.attention_processor import Attention

        ignored: list[nn.Module] = [module.conv_out]
        num_heads: dict[nn.Module, int] = {}
        n_attn = 0
        for sub in module.modules():
            if isinstance(sub, Attention):
                n_attn += 1
                self.prune_attention(sub, attention, ignored, num_heads)
        return PruneSetup(
            example_inputs=self.example_inputs(module, batch_size=2),
            ignored_layers=ignored,
            num_heads=num_heads,
            notes={
                "never_pruned": "conv_out (output channels)",
                "attention": self.attention_note(n_attn, attention),
                "groupnorm": "channels removed group by group (torch-pruning's GroupNorm groups)",
            },
        )

    def after_prune(self, module: nn.Module) -> None:
        from diffusers.models.downsampling import Downsample2D
        from diffusers.models.resnet import ResnetBlock2D
        from diffusers.models.upsampling import Upsample2D

        for sub in module.modules():
            if isinstance(sub, (Downsample2D, Upsample2D)) and getattr(sub, "conv", None) is not None:
                # Both assert the input's channel count against this cached value.
                sub.channels = sub.conv.in_channels
                sub.out_channels = sub.conv.out_channels
            elif isinstance(sub, ResnetBlock2D):
                sub.in_channels = sub.conv1.in_channels
                sub.out_channels = sub.conv2.out_channels

    def channel_widths(self, module: nn.Module) -> dict[str, int]:
        """Output channels of each block's first resnet (a readable summary of the widths)."""
        widths = {}
        for prefix, blocks in (("down", module.down_blocks), ("up", module.up_blocks)):
            for i, block in enumerate(blocks):
                widths[f"{prefix}{i}"] = int(block.resnets[0].conv1.out_channels)
        if module.mid_block is not None:
            widths["mid"] = int(module.mid_block.resnets[0].conv1.out_channels)
        return widths


def _teacher_key(student_key: str, offset: int) -> str:
    """The teacher's name of a student tensor: up block j is the teacher's j + offset."""
    if not offset:
        return student_key
    return re.sub(r"^up_blocks\.(\d+)\.", lambda m: f"up_blocks.{int(m.group(1)) + offset}.", student_key)


__all__ = ["UNetAdapter"]
