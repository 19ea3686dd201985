"""The adapter for diffusers' ``PixArtTransformer2DModel`` (model kind ``diffusion-dit``).

The transformer is called with PixArt's keyword arguments (``hidden_states``,
``encoder_hidden_states``, one ``timestep`` per image, ``added_cond_kwargs``), as the
pipeline calls it; the training objective is :class:`DiffusionAdapter`'s.

Students (distillation): whole transformer blocks are removed, the depth pruning of DiT
compression work (e.g. TinyFusion, Fang et al. 2024; BK-SDM's block removal, Kim et al. 2023,
transposed to a transformer). The kept blocks are copied from the teacher with the patch
embedding, the timestep (adaLN-single) and caption embeddings, the final modulation and the
output projection, so every weight of the student starts as the teacher's:

* ``alternate``: every other block (1, 3, 5, ...);
* ``middle``: the middle half of the blocks (the first and last quarter stay, where the
  patch tokens are first mixed and where the output is formed).

The student is the teacher's own class built from the teacher's config with fewer layers,
so mixins (the embedded model's ``CacheMixin``) and the config survive. Feature distillation
compares each student block's output with the output of the teacher block that ends the span
of blocks it stands in for.

Structural pruning: the residual width stays whole. It is shared by the positional
embedding (a buffer), the adaLN-single modulation tables (bare parameters of the residual
width) and every block's output, so it is a poor place to cut. What is removed is the width
inside each block: attention head dimensions (the same dimensions from every head of q, k and
v and from ``to_out``'s input, in self- and cross-attention) and the hidden width of the
feed-forward layers. The patch embedding, the timestep and caption embeddings, each block's
residual outputs (``to_out``, the feed-forward's second layer) and the output projection are
never pruned.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from bench.core.kinds import ModelKind
from strategies.adapters.base import PruneSetup, Student, copy_kept_layers
from strategies.adapters.diffusion import DiffusionAdapter
from strategies.core.base import StrategyError


class DiTAdapter(DiffusionAdapter):
    """Students, pruning and the call convention of a diffusers ``PixArtTransformer2DModel``."""

    kind = ModelKind.DIT
    drop_choices: ClassVar[dict[str, str]] = {
        "alternate": "every other transformer block: 1, 3, 5, ...",
        "middle": "the middle half of the transformer blocks (first and last quarter kept)",
    }
    default_drop: ClassVar[tuple[str, ...]] = ("alternate",)

    def structure_reason(self) -> str | None:
        from diffusers import PixArtTransformer2DModel

        module = self.module()
        if not isinstance(module, PixArtTransformer2DModel):
            if getattr(self.model, "frame_rate", None) is not None:
                return (
                    f"{self.model.name} is a video model: its {type(module).__name__} "
                    "denoises clips, and accelbench's students, pruning and few-step "
                    "training are built for PixArt's image blocks and batches of images"
                )
            return (
                f"its denoiser is a {type(module).__name__}, not a diffusers "
                "PixArtTransformer2DModel (already replaced by another strategy?)"
            )
        return None

    # -- the denoiser's inputs ------------------------------------------------------------
    def denoiser_inputs(
        self, sample: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor
    ) -> dict[str, Any]:
        """PixArt's keyword arguments: one timestep per image, no resolution conditioning."""
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(sample.shape[0])
        return {
            "hidden_states": sample,
            "encoder_hidden_states": embeds,
            "timestep": timestep,
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
            "return_dict": False,
        }

    # -- distillation -----------------------------------------------------------------------
    def removed_blocks(self, n: int, drop: tuple[str, ...]) -> list[int]:
        """Indices of the blocks of an ``n``-block transformer that ``drop`` removes."""
        removed: set[int] = set()
        if "alternate" in drop:
            removed |= set(range(1, n, 2))
        if "middle" in drop:
            keep = max(1, n // 4)
            removed |= set(range(keep, n - keep))
        return sorted(removed)

    def build_student(self, teacher: nn.Module, drop: tuple[str, ...]) -> Student:
        n = len(teacher.transformer_blocks)
        removed = self.removed_blocks(n, drop)
        kept = [i for i in range(n) if i not in removed]
        if not removed:
            raise StrategyError(
                f"dropping {'/'.join(drop)} removes no block of a {n}-block transformer"
            )
        if not kept:
            raise StrategyError(f"dropping {'/'.join(drop)} would leave no transformer block")
        config = {k: v for k, v in dict(teacher.config).items() if not k.startswith("_")}
        config["num_layers"] = len(kept)
        # The teacher's own class: subclasses (mixins such as CacheMixin) survive.
        student = type(teacher).from_config(config)
        reference = next(teacher.parameters())
        student.to(device=reference.device)
        if reference.dtype != next(student.parameters()).dtype:
            student.to(dtype=reference.dtype)

        copied = copy_kept_layers(teacher, student, "transformer_blocks", kept)
        student.train(teacher.training)
        # Student block k stands in for teacher blocks kept[k] .. kept[k + 1] - 1.
        ends = [*(k - 1 for k in kept[1:]), n - 1]
        pairs = [(f"transformer_blocks.{k}", f"transformer_blocks.{end}") for k, end in enumerate(ends)]
        return Student(
            module=student,
            feature_pairs=pairs,
            initialised=copied,
            removed=[f"transformer blocks {removed} of {n}"],
        )

    # -- structural pruning -------------------------------------------------------------
    def prune_setup(self, module: nn.Module, attention: str) -> PruneSetup:
        from diffusers.models.attention_processor import Attention

        if attention not in ("heads", "ignore"):
            raise StrategyError(f"attention must be 'heads' or 'ignore', got {attention!r}")
        module.requires_grad_(True)  # torch-pruning traces the autograd graph
        # Whole modules (and their submodules) that keep every channel.
        ignored: list[Any] = [module.pos_embed, module.proj_out, module.adaln_single]
        if module.caption_projection is not None:
            ignored.append(module.caption_projection)
        # The modulation tables (bare parameters) live on the residual width, never pruned.
        tables = [p for name, p in module.named_parameters() if name.endswith("scale_shift_table")]
        ignored += tables
        num_heads: dict[nn.Module, int] = {}
        n_attn = 0
        for block in module.transformer_blocks:
            ff = getattr(block, "ff", None)
            if ff is not None:
                ignored.append(ff.net[-1])  # writes back onto the residual stream
            for sub in block.modules():
                if not isinstance(sub, Attention):
                    continue
                n_attn += 1
                ignored.append(sub.to_out[0])  # writes back onto the residual stream
                self.prune_attention(sub, attention, ignored, num_heads)
        return PruneSetup(
            example_inputs=self.example_inputs(module, batch_size=2),
            ignored_layers=ignored,
            num_heads=num_heads,
            unwrapped_parameters=[(p, p.dim() - 1) for p in tables],  # type: ignore[arg-type]
            notes={
                "never_pruned": "the residual width (patch embedding, adaLN-single tables, "
                "caption and timestep embeddings, block outputs) and proj_out",
                "attention": self.attention_note(n_attn, attention),
                "feed_forward": "hidden width of every feed-forward layer",
            },
        )

    def channel_widths(self, module: nn.Module) -> dict[str, int]:
        """Per block: the attention widths (q) and the feed-forward hidden width."""
        widths = {}
        for i, block in enumerate(module.transformer_blocks):
            widths[f"block{i}.attn1"] = int(block.attn1.to_q.out_features)
            if getattr(block, "attn2", None) is not None:
                widths[f"block{i}.attn2"] = int(block.attn2.to_q.out_features)
            if getattr(block, "ff", None) is not None:
                widths[f"block{i}.ff"] = int(block.ff.net[-1].in_features)
        return widths

    def after_prune(self, module: nn.Module) -> None:
        from diffusers.models.attention_processor import Attention

        for sub in module.modules():
            if isinstance(sub, Attention):
                # Cached widths (read by some processors and by fuse_projections).
                sub.inner_dim = sub.to_q.out_features
                sub.inner_kv_dim = sub.to_k.out_features


__all__ = ["DiTAdapter"]
