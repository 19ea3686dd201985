"""``digits-ar``: the embedded autoregressive, LLM-style image generator (transformers).

A decoder-only Llama (``LlamaForCausalLM``: 8 layers x 256 wide, 6.8M parameters) writes a
digit as a sequence of image tokens after a prompt token, exactly as a language model writes
text. ``digits-ar-large`` is the same model at 12 layers x 384 (23M parameters), a second
reference size whose target costs many times its draft per token (see
:mod:`bench.models.digits.training.train_digits_ar_large`).

Tokenization (:mod:`bench.models.digits.tokens`): one token per pixel level after one prompt
token; generation always makes exactly 64 new tokens, and prompt tokens can never be generated
(the decoding loop only ever sees the logits of the 17 image tokens).

Generation (:mod:`bench.models.ar_decoding`): our own decoding loop with a KV cache, all
images of a call decoded together (``batched=True``; ``batched=False`` decodes them one at a
time), every image's randomness drawn from its own seed. Settings (``call_args``, recorded
with every result): sampled by default (``do_sample=True``, ``temperature=1.0``,
``top_k=8``): sampled images are as varied as real digits, which FID/KID need. On 200 images
(prompts balanced over 0..9, seeds 0..199, batches of 8) the digit classifier reads the
prompted digit in 97.5% of them, FID 1.09 against the held-out digits. Before the shipped
weights were fine-tuned on ZipAR's contexts (below) the same settings gave 99.5% and 1.08;
plain temperature-1 sampling 99.0% and 1.10, temperature 0.9 with top-k 5 97.5% and 1.44,
and greedy decoding (``do_sample=False``: the image then depends only on the prompt, ten
distinct images) 100% but FID 12.8. ``use_cache=False`` recomputes the whole sequence at
every step.
Strategies replace the decoding algorithm through :meth:`DigitsAR.set_decoder` (``zipar``,
``sjd``, ``speculative``). Per-step callbacks fire once per target forward pass. Decoding
counts accumulate in ``notes["decoding"]`` (keys in :mod:`bench.models.ar_decoding`).

A distilled draft model ships in ``weights/digits-ar/draft/`` for speculative decoding
(``speculative`` strategy): 2 decoder layers of the target's width (a quarter of its
parameters), initialised from the target's first and last layers and distilled on the
target's own outputs; ``digits-ar-large`` ships a 2-layer x 128 draft distilled from its
target. Weights are trained with ``python -m bench.models.digits.training.train_digits_ar`` (target) and
``python -m bench.models.digits.training.distill_digits_ar_draft`` (draft) on the ``generator`` split only.
The target was then fine-tuned with ``python -m bench.models.digits.training.zipar_contexts`` on ZipAR's
decoding contexts (windows 2-4) while held to its own raster-order distributions: an 8x8
digit's rows are too short for ZipAR's locality to hold in a model that only ever saw raster
order (see :mod:`strategies.zipar`). Records of ``zipar`` on this model carry that caveat
(``trained_for``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from bench.core.errors import ModelError
from bench.core.kinds import ModelKind
from bench.models import ar_decoding, weight_codec
from bench.models.base import StepCallback, TokenData
from bench.models.digits import WEIGHTS_ROOT, training_command
from bench.models.digits.domain import DigitsDomain, quiet_loading
from bench.models.digits.tokens import (
    GRID,
    IMAGE_TOKENS,
    NUM_DIGITS,
    NUM_LEVELS,
    PROMPT_TOKEN_OFFSET,
    SEQUENCE_LENGTH,
    VOCAB_SIZE,
    float_images_to_tokens,
    images_to_tokens,
    prompt_token,
    raw_split,
    sequences,
    token_batches,
    tokens_to_images,
    upsample_matrix,
)
from bench.models.token_image import TokenImageModel

WEIGHTS_DIR = WEIGHTS_ROOT / "digits-ar"
DRAFT_DIR = WEIGHTS_DIR / "draft"
LARGE_DIR = WEIGHTS_ROOT / "digits-ar-large"
TRAIN_COMMAND = training_command("train_digits_ar")
DISTILL_COMMAND = training_command("distill_digits_ar_draft")
LARGE_COMMAND = training_command("train_digits_ar_large")
ZIPAR_COMMAND = training_command("zipar_contexts")

#: The target's architecture (see :func:`llama_config`).
TARGET_ARCH: dict[str, int] = {"layers": 8, "hidden": 256, "heads": 8, "intermediate": 768}
#: ``digits-ar-large``: a target several times heavier per token than its draft.
LARGE_ARCH: dict[str, int] = {"layers": 12, "hidden": 384, "heads": 6, "intermediate": 1152}
#: A narrow draft architecture for drafts trained from scratch (``distill_digits_ar_draft
#: --init-layers none``); the shipped draft is 2 layers of the target's width instead.
DRAFT_ARCH: dict[str, int] = {"layers": 2, "hidden": 128, "heads": 4, "intermediate": 384}

#: Default generation settings: sampled (temperature and top-k chosen so that the digit
#: classifier reads the prompted digit in >= 90% of 200 images: 97.5% measured, see the
#: module docstring), all images of a call decoded together, KV cache on.
DEFAULT_CALL_ARGS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 1.0,
    "top_k": 8,
    "use_cache": True,
    "batched": True,
}
_CALL_ARG_NAMES = frozenset(DEFAULT_CALL_ARGS)


# -- the transformers model ---------------------------------------------------------------
def llama_config(layers: int, hidden: int, heads: int, intermediate: int):
    """A ``LlamaConfig`` over the digits vocabulary (nn.Linear layers throughout, so int8
    quantization and structured pruning apply to every projection)."""
    if hidden % heads:
        raise ModelError(f"hidden size {hidden} is not divisible by {heads} heads")
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=SEQUENCE_LENGTH,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def generation_config():
    """Generation defaults of the digits models: exactly 64 new tokens, never a prompt token."""
    return GenerationConfig(
        max_new_tokens=IMAGE_TOKENS,
        min_new_tokens=IMAGE_TOKENS,
        do_sample=False,
        suppress_tokens=list(range(PROMPT_TOKEN_OFFSET, VOCAB_SIZE)),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_lm(arch: dict[str, int], seed: int = 0) -> torch.nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` of ``arch`` (keys of :data:`TARGET_ARCH`)."""
    torch.manual_seed(seed)
    lm = LlamaForCausalLM(llama_config(**arch))
    lm.generation_config = generation_config()
    return lm


def save_lm(lm: torch.nn.Module, directory: Path, dtype: torch.dtype = torch.float16) -> None:
    """Save a copy of ``lm`` with weights cast to ``dtype`` (safetensors via save_pretrained)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        copy.deepcopy(lm).to(dtype).save_pretrained(str(directory), safe_serialization=True)


def load_lm(
    directory: Path, device: str | torch.device = "cpu", what: str = "digits-ar",
    command: str | None = None,
) -> torch.nn.Module:
    """Load a saved digits LM in float32, eval mode, offline; a missing directory is an error
    naming ``command`` (by default the target's or the draft's training command)."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        command = command or (DISTILL_COMMAND if directory.name == "draft" else TRAIN_COMMAND)
        raise FileNotFoundError(f"{what} weights not found in {directory}; train them with `{command}`")
    with quiet_loading():
        if weight_codec.is_encoded(directory):
            lm = LlamaForCausalLM(LlamaConfig.from_pretrained(str(directory)))
            lm.load_state_dict(weight_codec.load_encoded(directory), strict=True)
        else:
            lm = LlamaForCausalLM.from_pretrained(
                str(directory), dtype=torch.float32, use_safetensors=True, local_files_only=True
            )
    lm.generation_config = generation_config()
    return lm.to(device).eval()


class DigitsNetwork(ar_decoding.TokenNetwork):
    """A digits ``LlamaForCausalLM`` as the decoding loop runs it: image-token indices are
    its token ids 0..16 and its logits are cut to those 17 (prompt tokens are never
    generated)."""

    def __init__(self, lm: torch.nn.Module) -> None:
        self.module = lm
        self.vocab = NUM_LEVELS
        self._cache_kw = ar_decoding.cache_keyword(lm)

    def forward(self, tokens, positions, mask, cache, prompt=False):
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        out = self.module(input_ids=tokens, position_ids=positions, attention_mask=mask,
                          use_cache=cache is not None, **kwargs)
        return out.logits[..., :NUM_LEVELS].float()

    def forward_sequence(self, prompt: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The whole sequence in one uncached forward pass (the ``no-kv-cache`` run)."""
        out = self.module(input_ids=torch.cat([prompt, tokens], dim=1), use_cache=False)
        return out.logits[:, -1, :NUM_LEVELS].float()


@dataclass
class DigitsAR(DigitsDomain, TokenData, TokenImageModel):
    """The embedded ``digits-ar`` reference models around a ``LlamaForCausalLM``.

    Attributes:
        lm: the transformer (the ``denoiser`` role: the network run at every step).
        assistant: the draft model of speculative decoding (role ``draft``), or None.
        decoder: the decoding algorithm a strategy installed (None: plain autoregressive).
        draft_dir: where this model's shipped draft lives.
    """

    lm: Any = field(default=None, repr=False)
    draft_dir: Path | None = field(default=None, repr=False)

    network_attr: ClassVar[str] = "lm"
    call_arg_names: ClassVar[frozenset[str]] = _CALL_ARG_NAMES

    # -- generation -------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], seeds: Sequence[int],
                 step_callback: StepCallback | None = None, **call_args: Any) -> torch.Tensor:
        """One image per (prompt, seed), float NCHW in [0, 1] on the CPU.

        Decoded by the installed decoder (plain autoregressive decoding by default) with the
        sampling settings of ``call_args``; each image draws its randomness from its own seed
        (greedy decoding ignores the seeds). Decoding counts accumulate in
        ``notes["decoding"]``.
        """
        args = self.call_settings(prompts, seeds, call_args)
        if not prompts:
            return torch.empty(0, 1, 16, 16)
        prompt = torch.tensor([[prompt_token(p)] for p in prompts], device=self.device)
        tokens = self.decode(prompt, seeds, args, DigitsNetwork, step_callback)
        return tokens_to_images(tokens)

    # -- the token protocol ------------------------------------------------------------
    @property
    def tokens_per_image(self) -> int:
        """Tokens generated per image (64: one per pixel)."""
        return IMAGE_TOKENS

    @property
    def token_grid(self) -> tuple[int, int]:
        """The image-token grid, (rows, cols) in raster order: (8, 8)."""
        return (GRID, GRID)

    def default_draft(self) -> torch.nn.Module:
        """A fresh copy of the shipped draft, distilled from the shipped target.

        Raises:
            FileNotFoundError: no draft is shipped; the message names the command making it.
        """
        directory = self.draft_dir if self.draft_dir is not None else DRAFT_DIR
        command = LARGE_COMMAND if directory.parent.name == LARGE_DIR.name else DISTILL_COMMAND
        return load_lm(directory, self.device, what=f"{self.name} draft", command=command)

    # -- training token sequences ------------------------------------------------------
    def token_batches(self, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
        """Endless shuffled (batch, 65) token sequences of the ``generator`` split."""
        return token_batches(batch_size, seed, "generator")

    def token_sequences(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """(N, 65) token sequences of float images (N, 1, 16, 16) and their prompts: the
        prompt token, then the pixel tokens (:func:`float_images_to_tokens`)."""
        prompt = torch.tensor([[prompt_token(p)] for p in prompts])
        return torch.cat([prompt, float_images_to_tokens(images)], dim=1).to(self.device)


def load(
    device: str = "cpu", directory: str | Path | None = None, name: str = "digits-ar"
) -> DigitsAR:
    """Load ``digits-ar`` from the weights shipped in the package (offline, about a second).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    directory = Path(directory) if directory is not None else WEIGHTS_DIR
    return _digits_ar(name, load_lm(directory, device), directory, device)


def _digits_ar(name: str, lm: torch.nn.Module, directory: Path, device: str) -> DigitsAR:
    """The model around ``lm`` loaded from ``directory`` (its draft in ``draft/``)."""
    return DigitsAR(
        name=name,
        kind=ModelKind.AUTOREGRESSIVE,
        device=torch.device(device),
        dtype=torch.float32,
        call_args=dict(DEFAULT_CALL_ARGS),
        lm=lm,
        draft_dir=directory / "draft",
        trained_for=_trained_for(directory),
    )


def _trained_for(directory: Path) -> dict[str, str]:
    """What the weights in ``directory`` were fine-tuned for, read from their training info."""
    info = directory / "zipar_training_info.json"
    if not info.is_file():
        return {}
    windows = json.loads(info.read_text(encoding="utf-8"))["args"]["windows"]
    return {"zipar": (
        f"this model was fine-tuned on ZipAR's decoding contexts (windows {windows}; "
        f"{ZIPAR_COMMAND}), so its quality under zipar is that of a model trained for it; a "
        "model trained in raster order only loses more (see the zipar strategy's notes)"
    )}


def load_large(device: str = "cpu") -> DigitsAR:
    """Load ``digits-ar-large`` (12 layers x 384) and its draft from the shipped weights.

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    lm = load_lm(LARGE_DIR, device, what="digits-ar-large", command=LARGE_COMMAND)
    model = _digits_ar("digits-ar-large", lm, LARGE_DIR, device)
    model.notes["cost_structure"] = _LARGE_NOTE
    return model


#: Why digits-ar-large exists, recorded in its notes.
_LARGE_NOTE = (
    "digits-ar-large: a 12 x 384 target (23M parameters) with a 2 x 128 draft (0.43M): on a "
    "CPU at batch 8 a target step costs 16.6x a draft step (18.0 ms against 1.1 ms, one "
    "thread), against 4.2x for digits-ar's 8 x 256 target and its 2 x 256 draft (8.4 against "
    "2.0 ms): the regime where speculative decoding pays off (1.20x measured here with 2 "
    "draft tokens, 0.97x on digits-ar)"
)


__all__ = [
    "DEFAULT_CALL_ARGS",
    "DRAFT_ARCH",
    "GRID",
    "IMAGE_TOKENS",
    "LARGE_ARCH",
    "NUM_DIGITS",
    "NUM_LEVELS",
    "PROMPT_TOKEN_OFFSET",
    "SEQUENCE_LENGTH",
    "TARGET_ARCH",
    "VOCAB_SIZE",
    "DigitsAR",
    "DigitsNetwork",
    "build_lm",
    "float_images_to_tokens",
    "generation_config",
    "images_to_tokens",
    "llama_config",
    "load",
    "load_large",
    "load_lm",
    "prompt_token",
    "raw_split",
    "save_lm",
    "sequences",
    "token_batches",
    "tokens_to_images",
    "upsample_matrix",
]
