"""The adapter for decoder-only transformers (model kind ``autoregressive``: ``digits-ar``).

The module is a transformers ``LlamaForCausalLM`` writing an image as tokens after a prompt
token. The adapter reaches the model only through the token protocol of
:class:`bench.models.base.ReferenceModel` (``token_sequences``, ``token_batches``).

Training (distillation, pruning recovery): the model's task loss is next-token cross-entropy
on the image tokens, as the embedded models are trained. Training images arrive as
float images (so the shared augmentations, crop/colour/noise, apply to them) and the model
turns them back into token sequences (``model.token_sequences``; for the digits models the
least-squares inverse of the 8x8 -> 16x16 upsampling, rounded to the 17 pixel levels: exact
for real digits, the nearest token image for augmented ones).

The module's output is its logits, centred over the vocabulary (softmax and cross-entropy do
not change): the shared output-distillation loss (MSE between student and teacher outputs)
is then logit matching, the high-temperature limit of the KL divergence between their
next-token distributions (Hinton et al., 2015).

Students (distillation): whole decoder layers are removed and the kept ones are copied from
the teacher with the embeddings, final norm and output head (DistilBERT's initialisation,
Sanh et al., 2019): ``alternate`` drops every other layer (1, 3, 5, ...), ``upper`` the upper
half. Feature distillation compares each student layer's output with the teacher layer's
output at the end of the span of layers it stands in for, and the final norms' outputs.

Structural pruning: MLP channels (the intermediate width of gate/up/down) and attention head
dimensions (the same dimensions in every head of q, k and v and in o_proj's input) are removed
with torch-pruning; the residual width (embeddings, norms, o_proj and down_proj outputs) and
the output head stay whole. Rotary position embeddings rotate dimension i together with
i + head_dim/2, so head dimensions are pruned in those pairs: torch-pruning is told each head
is two half-heads, which makes it remove the same offsets from both halves; afterwards each
attention layer keeps the rotary frequencies of the dimensions it kept.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.kinds import ModelKind
from bench.models.base import has_token_data
from strategies.adapters.base import (
    ModelAdapter,
    PruneSetup,
    Student,
    TrainBatch,
    copy_kept_layers,
)
from strategies.core.base import StrategyError


class AutoregressiveAdapter(ModelAdapter):
    """Students, pruning and the training task of a ``LlamaForCausalLM`` image-token model."""

    kind = ModelKind.AUTOREGRESSIVE
    drop_choices: ClassVar[dict[str, str]] = {
        "alternate": "every other decoder layer: 1, 3, 5, ... (DistilBERT's initialisation)",
        "upper": "the upper half of the decoder layers",
    }
    default_drop: ClassVar[tuple[str, ...]] = ("alternate",)

    def __init__(self, model) -> None:
        super().__init__(model)
        self._rope = _RopeDims()

    def structure_reason(self) -> str | None:
        module = self.module()
        inner = getattr(module, "model", None)
        if not hasattr(module, "lm_head") or not hasattr(inner, "layers"):
            return (
                f"its transformer is a {type(module).__name__}, not a transformers causal LM "
                "with model.layers and lm_head (already replaced by another strategy?)"
            )
        if any(not isinstance(getattr(m, "weight", None), nn.Parameter)
               or type(m.weight) is not nn.Parameter
               for m in module.modules() if isinstance(m, nn.Linear)):
            return "its Linear layers were already converted (quantized?); prune or distil first"
        return None

    def training_reason(self) -> str | None:
        if not hasattr(self.model, "prompts"):
            return f"{self.model.name} has no prompts"
        reason = super().training_reason()
        if reason:
            return reason
        if not has_token_data(self.model):
            return f"{self.model.name} ({self.model.kind}) has no token training data"
        return None

    # -- training ------------------------------------------------------------------------
    def make_batch(
        self, images: torch.Tensor, prompts: list[str], generator: torch.Generator
    ) -> TrainBatch:
        seqs = self.model.token_sequences(images, prompts)
        return TrainBatch(
            inputs={"input_ids": seqs[:, :-1], "use_cache": False}, target=seqs[:, 1:]
        )

    def forward(self, module: nn.Module, batch: TrainBatch) -> torch.Tensor:
        """Logits (B, 64, vocab), centred over the vocabulary."""
        logits = module(**batch.inputs).logits
        return logits - logits.mean(dim=-1, keepdim=True)

    def task_loss(self, output: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        """Next-token cross-entropy on the image tokens."""
        return F.cross_entropy(output.float().reshape(-1, output.shape[-1]), batch.target.reshape(-1))

    def example_inputs(self, module: nn.Module, batch_size: int = 1) -> dict[str, Any]:
        """``batch_size`` real token sequences of the model's training data (the first batch
        of ``model.token_batches`` with seed 0)."""
        seqs = next(iter(self.model.token_batches(batch_size, 0)))
        device = next(module.parameters()).device
        return {"input_ids": seqs[:, :-1].to(device), "use_cache": False}

    # -- distillation --------------------------------------------------------------------
    def build_student(self, teacher: nn.Module, drop: tuple[str, ...]) -> Student:
        import copy

        n = len(teacher.model.layers)
        removed_idx: set[int] = set()
        if "alternate" in drop:
            removed_idx |= set(range(1, n, 2))
        if "upper" in drop:
            removed_idx |= set(range((n + 1) // 2, n))
        kept = [i for i in range(n) if i not in removed_idx]
        if not kept:
            raise StrategyError(f"dropping {'/'.join(drop)} would leave no decoder layer")
        config = copy.deepcopy(teacher.config)
        config.num_hidden_layers = len(kept)
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = [config.layer_types[i] for i in kept]
        student = type(teacher)(config)
        student.generation_config = copy.deepcopy(teacher.generation_config)
        param = next(teacher.parameters())
        student.to(device=param.device, dtype=param.dtype)

        copied = copy_kept_layers(teacher, student, "model.layers", kept)
        # Student layer k stands in for teacher layers kept[k] .. kept[k + 1] - 1.
        ends = [*(k - 1 for k in kept[1:]), n - 1]
        pairs = [(f"model.layers.{k}", f"model.layers.{end}") for k, end in enumerate(ends)]
        pairs.append(("model.norm", "model.norm"))
        return Student(
            module=student,
            feature_pairs=pairs,
            initialised=copied,
            removed=[f"decoder layers {sorted(removed_idx)} of {n}"] if removed_idx else [],
        )

    # -- structural pruning --------------------------------------------------------------
    def prune_setup(self, module: nn.Module, attention: str) -> PruneSetup:
        if attention not in ("heads", "ignore"):
            raise StrategyError(f"attention must be 'heads' or 'ignore', got {attention!r}")
        layers = list(module.model.layers)
        module.requires_grad_(True)  # torch-pruning traces the autograd graph
        ignored: list[nn.Module] = [module.lm_head]
        num_heads: dict[nn.Module, int] = {}
        for layer in layers:
            attn = layer.self_attn
            if attn.config.num_key_value_heads != attn.config.num_attention_heads:
                raise StrategyError("grouped-query attention is not supported by this adapter")
            # Outputs on the residual stream stay whole (its width is not pruned).
            ignored += [attn.o_proj, layer.mlp.down_proj]
            projections = [attn.q_proj, attn.k_proj, attn.v_proj]
            if attention == "ignore":
                ignored += projections
            else:
                # Two half-heads per head: the same offsets go from both halves, so the rotary
                # pairs (i, i + head_dim / 2) are kept or removed together.
                for proj in projections:
                    num_heads[proj] = 2 * attn.config.num_attention_heads
                self._rope.remember(attn)
        how = (
            "head dimensions pruned alike in every head, in rotary pairs (q, k, v, o_proj input)"
            if attention == "heads"
            else "attention left whole"
        )
        return PruneSetup(
            example_inputs=self.example_inputs(module, batch_size=2),
            ignored_layers=ignored,
            num_heads=num_heads,
            # RMSNorm scales live on the residual width, which is not pruned. torch-pruning
            # takes (parameter, dim) pairs (PruneSetup's annotation says dict).
            unwrapped_parameters=[  # type: ignore[arg-type]
                (m.weight, 0) for m in module.modules()
                if type(m).__name__.endswith("RMSNorm") and isinstance(getattr(m, "weight", None), nn.Parameter)
            ],
            notes={
                "never_pruned": "lm_head, and the residual width (embeddings, norms, o_proj "
                "and down_proj outputs)",
                "mlp": "intermediate channels of gate_proj/up_proj (down_proj input)",
                "attention": f"{len(layers)} attention layers: {how}",
            },
        )

    def after_prune(self, module: nn.Module) -> None:
        for layer in module.model.layers:
            self._rope.apply(layer.self_attn)

    def channel_widths(self, module: nn.Module) -> dict[str, int]:
        """Per layer, the MLP's intermediate width and the attention's head dimension."""
        widths = {}
        for i, layer in enumerate(module.model.layers):
            widths[f"mlp{i}"] = int(layer.mlp.gate_proj.out_features)
            widths[f"head_dim{i}"] = int(layer.self_attn.q_proj.out_features
                                        // layer.self_attn.config.num_attention_heads)
        return widths


class _RopeDims:
    """Keeps rotary position embeddings right after head dimensions were pruned.

    Before pruning, :meth:`remember` stores the attention's q_proj weight; afterwards
    :meth:`apply` finds which rows survived, sets the new ``head_dim`` and turns the layer into
    a :class:`PrunedRopeAttention` that keeps only the cos/sin entries of its kept dimensions.
    """

    def __init__(self) -> None:
        self._before: dict[int, torch.Tensor] = {}

    def remember(self, attn: nn.Module) -> None:
        self._before[id(attn)] = attn.q_proj.weight.detach().clone()

    def apply(self, attn: nn.Module) -> None:
        before = self._before.pop(id(attn), None)
        heads = attn.config.num_attention_heads
        head_dim = attn.q_proj.out_features // heads
        if before is None or head_dim == attn.head_dim:
            return
        old_dim = before.shape[0] // heads
        after = attn.q_proj.weight.detach()
        # Rows are kept in order; find each kept row of head 0 in the original weight.
        kept = []
        for row in after[:head_dim]:
            match = (before[:old_dim] == row).all(dim=1).nonzero()
            if len(match) == 0:
                raise StrategyError("cannot tell which head dimensions were kept after pruning")
            kept.append(int(match[0]))
        half = head_dim // 2
        if kept[half:] != [k + old_dim // 2 for k in kept[:half]]:
            raise StrategyError("head dimensions were not pruned in rotary pairs")
        attn.head_dim = head_dim
        attn.register_buffer("rope_index", torch.tensor(kept, device=after.device))
        attn.__class__ = _pruned_rope_class(type(attn))


_PRUNED_CLASSES: dict[type, type] = {}


def _pruned_rope_class(base: type) -> type:
    """A subclass of the attention class that keeps only its kept rotary dimensions."""
    if base.__name__.startswith("PrunedRope"):
        return base
    if base not in _PRUNED_CLASSES:
        def forward(self, hidden_states, position_embeddings=None, *args, **kwargs):
            if position_embeddings is not None:
                cos, sin = position_embeddings
                position_embeddings = (cos[..., self.rope_index], sin[..., self.rope_index])
            return base.forward(self, hidden_states, position_embeddings, *args, **kwargs)

        name = f"PrunedRope{base.__name__}"
        cls = type(name, (base,), {"forward": forward, "__module__": __name__, "__qualname__": name})
        globals()[name] = cls  # so the pruned module pickles by reference
        _PRUNED_CLASSES[base] = cls
    return _PRUNED_CLASSES[base]


__all__ = ["AutoregressiveAdapter"]
