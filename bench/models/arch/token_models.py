"""What the autoregressive architecture families (``arch:janus``, ``arch:emu3``) share: the model
class around a transformers image-token model, decoded by our own loop
(:mod:`bench.models.ar_decoding`) so that ``zipar``, ``sjd`` and ``speculative`` run on them
exactly as on ``digits-ar``.

A family module describes its model with a :class:`TokenFamily` (how prompts become tokens,
how the network is run, the token grid, how tokens become an image, how a draft is built) and
builds an :class:`ArchTokenModel`. Weights are random, so the images mean nothing: quality is
unavailable except fidelity to the same model's baseline (numerical deviation); latency,
memory and energy are real.

Tokens become an image through the model's own VQ decoder (``decode_image_tokens``), as the
real pipelines do: it is part of what one generation call costs, and cheap next to decoding
(one decoder pass per image against hundreds of transformer passes).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from bench.core.kinds import ModelKind
from bench.models import ar_decoding
from bench.models.arch.common import ArchIdentity, arch_fields, building, check_size, component_seed
from bench.models.base import StepCallback
from bench.models.hub import HUB_PROMPTS, hub_prompts
from bench.models.token_image import TokenImageModel

#: Generation arguments the autoregressive architecture models take.
CALL_ARG_NAMES = frozenset(
    {"do_sample", "temperature", "top_k", "guidance_scale", "use_cache", "batched"}
)


class TokenFamily(ABC):
    """How one autoregressive architecture family is tokenized, run and decoded."""

    #: (rows, cols) of the token grid the model writes in raster order.
    grid: tuple[int, int]
    #: Dotted path of the sub-module whose calls run the network, where the model's own
    #: ``forward`` is not the generation path ("": the model itself). ``compile`` compiles it.
    compile_entry: str = ""

    @abstractmethod
    def prompt_tokens(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) prompt token ids, both ``(B, P)``: the real model's
        generation prompt and the one classifier-free guidance runs against."""

    @abstractmethod
    def network(self, module: torch.nn.Module) -> ar_decoding.TokenNetwork:
        """``module`` (the model, or a draft) as the decoding loop runs it."""

    @abstractmethod
    def images(self, module: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Decoded image-token indices ``(B, rows * cols)`` as float images in [0, 1]."""

    @abstractmethod
    def draft(self, module: torch.nn.Module, seed: int) -> torch.nn.Module:
        """A smaller draft network of the same class for speculative decoding."""

    def constrain(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Logits with tokens a grid position may not hold set to -inf (default: none)."""
        return logits


@dataclass
class ArchTokenModel(ArchIdentity, TokenImageModel):
    """A transformers image-token model built from a published configuration, random weights.

    Attributes (besides :class:`~bench.models.token_image.TokenImageModel`'s and
    :class:`~bench.models.arch.common.ArchIdentity`'s):
        family_spec: the family's :class:`TokenFamily`.
        network_module: the transformers model (role ``denoiser``).
        seed: the seed of the random weights (the draft's weights derive from it).
    """

    family_spec: Any = field(default=None, repr=False)
    network_module: Any = field(default=None, repr=False)
    seed: int = 0

    network_attr: ClassVar[str] = "network_module"
    call_arg_names: ClassVar[frozenset[str]] = CALL_ARG_NAMES

    # -- generation -------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], seeds: Sequence[int],
                 step_callback: StepCallback | None = None, **call_args: Any) -> torch.Tensor:
        """One image per (prompt, seed), float NCHW in [0, 1] on the CPU, decoded by the
        installed decoder with classifier-free guidance (``guidance_scale`` > 1) as the real
        model generates."""
        args = self.call_settings(prompts, seeds, call_args)
        spec: TokenFamily = self.family_spec
        cond, uncond = spec.prompt_tokens(prompts)
        cond, uncond = cond.to(self.device), uncond.to(self.device)
        scale = float(args.get("guidance_scale", 1.0) or 1.0)

        def wrap(module: torch.nn.Module) -> ar_decoding.TokenNetwork:
            net = spec.network(module)
            return ar_decoding.GuidedNetwork(net, scale, uncond) if scale > 1 else net

        tokens = self.decode(cond, seeds, args, wrap, step_callback, constrain=spec.constrain)
        with torch.no_grad():
            return spec.images(self.network_module, tokens).float().cpu()

    # -- the token protocol ---------------------------------------------------------------
    @property
    def tokens_per_image(self) -> int:
        """Tokens generated per image (the whole grid)."""
        rows, cols = self.family_spec.grid
        return rows * cols

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of the token grid, raster order."""
        return tuple(self.family_spec.grid)  # type: ignore[return-value]

    @property
    def compile_entry(self) -> str:
        """See :attr:`TokenFamily.compile_entry`."""
        return self.family_spec.compile_entry

    def default_draft(self) -> torch.nn.Module:
        """A smaller random draft of the same class (see the family module)."""
        return self.family_spec.draft(self.network_module, self.seed)

    # -- prompts (no data: random weights) ----------------------------------------------
    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        return hub_prompts(n)

    def describe(self) -> dict[str, Any]:
        """The token model's summary plus the token grid and what is built."""
        return {**super().describe(), "token_grid": list(self.token_grid), **self.identity()}


def copy_matching(source: torch.nn.Module, target: torch.nn.Module,
                  rename: Callable[[str], str | None]) -> int:
    """Copy into ``target`` every tensor whose name ``rename`` maps to a tensor of the same
    shape in ``source``; returns the number of elements copied."""
    src = source.state_dict()
    state = target.state_dict()
    copied = 0
    for key in state:
        name = rename(key)
        if name is not None and name in src and src[name].shape == state[key].shape:
            state[key] = src[name].detach().clone()
            copied += state[key].numel()
    target.load_state_dict(state)
    return copied


def layer_renamer(prefix: str, layers: Sequence[int]) -> Callable[[str], str | None]:
    """Map a draft's ``{prefix}.{i}.`` tensors to the target's ``{prefix}.{layers[i]}.``."""
    def rename(key: str) -> str | None:
        if key.startswith(prefix + "."):
            rest = key[len(prefix) + 1:]
            index, _, tail = rest.partition(".")
            return f"{prefix}.{layers[int(index)]}.{tail}"
        return key

    return rename


def build_token_model(family: str, module_class: type, config: Any, spec: TokenFamily, *,
                      size: str, device: str, seed: int, call_args: dict[str, Any],
                      reproduces: str, note: str) -> ArchTokenModel:
    """Build ``module_class(config)`` with random weights from ``seed`` on ``device`` (in eval
    mode, frozen) and wrap it as the ``arch:<family>[@tiny]`` model decoded by ``spec``."""
    check_size(size)
    with building(device, seed, family):
        module = module_class(config)
    module.eval().requires_grad_(False)
    fields = arch_fields(family, size, device, ModelKind.AUTOREGRESSIVE, call_args, reproduces,
                         note)
    return ArchTokenModel(**fields, family_spec=spec, network_module=module, seed=seed)


def end_layers_draft(module: torch.nn.Module, seed: int, component: str,
                     layers_prefix: str) -> torch.nn.Module:
    """A draft of ``module``'s own class keeping only its first and last decoder layers
    (under ``layers_prefix``), every other tensor copied from ``module``: the same
    vocabulary and embeddings, a fraction of the cost per token."""
    cfg = copy.deepcopy(module.config)
    n = cfg.text_config.num_hidden_layers
    layers = [0, n - 1] if n > 2 else [0]
    cfg.text_config.num_hidden_layers = len(layers)
    device = next(module.parameters()).device
    torch.manual_seed(component_seed(seed, component))
    with torch.device(device):
        draft = type(module)(cfg)
    copy_matching(module, draft, layer_renamer(layers_prefix, layers))
    return draft.to(next(module.parameters()).dtype).eval().requires_grad_(False)


# -- an offline tokenizer --------------------------------------------------------------------
@cache
def text_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer (the algorithm of DeepSeek's and Qwen's tokenizers, which
    Janus and Emu3 use), learned here from the benchmark prompts so nothing is downloaded;
    every prompt word is one token. Ids start at 0; the families offset them into their own
    vocabularies."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(HUB_PROMPTS), trainer=trainer)
    return tok


def encode_text(text: str) -> list[int]:
    """Token ids (from 0) of ``text`` under :func:`text_tokenizer`."""
    return list(text_tokenizer().encode(text).ids)


def pad_left(rows: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    """Token id lists as one ``(B, P)`` tensor, shorter rows left-padded with ``pad`` (which
    the model attends to like any token: prompts of one call have one length)."""
    width = max(len(r) for r in rows)
    return torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)


__all__ = [
    "CALL_ARG_NAMES",
    "ArchTokenModel",
    "TokenFamily",
    "component_seed",
    "copy_matching",
    "encode_text",
    "layer_renamer",
    "pad_left",
    "text_tokenizer",
]
