"""``digits-ar``: the embedded autoregressive, LLM-style image generator (transformers).

A decoder-only Llama (``LlamaForCausalLM``: 8 layers x 256 wide, 6.8M parameters) writes a
digit as a sequence of image tokens after a prompt token, exactly as a language model writes
text. ``digits-ar-large`` is the same model at 12 layers x 384 (23M parameters), a second
reference size whose target costs many times its draft per token (see
:mod:`bench.training.train_digits_ar_large`).

Tokenization (no learned codebook: the data is already discrete):

* image tokens ``0..16``: the 8x8 handwritten digits have integer pixel values 0..16, so each
  pixel is one token, read in raster order (64 tokens per image, an 8x8 token grid);
* prompt tokens ``17..26``: the digit the prompt asks for (``"a handwritten 3"`` -> 20);
* a sequence is ``[prompt token, 64 image tokens]`` (65 tokens); generation always makes
  exactly 64 new tokens, and prompt tokens can never be generated (the decoding loop only
  ever sees the logits of the 17 image tokens).

Decoded tokens are upsampled to 16x16 in [0, 1] exactly as :mod:`bench.data` prepares the real
images, so the digit classifier, PSNR/SSIM and FID/KID apply unchanged.

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
target. Weights are trained with ``python -m bench.training.train_digits_ar`` (target) and
``python -m bench.training.distill_digits_ar_draft`` (draft) on the ``generator`` split only.
The target was then fine-tuned with ``python -m bench.training.zipar_contexts`` on ZipAR's
decoding contexts (windows 2-4) while held to its own raster-order distributions: an 8x8
digit's rows are too short for ZipAR's locality to hold in a model that only ever saw raster
order (see :mod:`strategies.zipar`). Records of ``zipar`` on this model carry that caveat
(``trained_for``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.models import ar_decoding
from bench.models.base import ReferenceModel, StepCallback

WEIGHTS_DIR = Path(__file__).parent / "weights" / "digits-ar"
DRAFT_DIR = WEIGHTS_DIR / "draft"
LARGE_DIR = Path(__file__).parent / "weights" / "digits-ar-large"
TRAIN_COMMAND = "python -m bench.training.train_digits_ar"
DISTILL_COMMAND = "python -m bench.training.distill_digits_ar_draft"
LARGE_COMMAND = "python -m bench.training.train_digits_ar_large"
ZIPAR_COMMAND = "python -m bench.training.zipar_contexts"

GRID = 8  #: the digits are 8x8 pixels
NUM_LEVELS = 17  #: pixel values 0..16, one token each
IMAGE_TOKENS = GRID * GRID  #: tokens generated per image
PROMPT_TOKEN_OFFSET = NUM_LEVELS  #: prompt token of digit d is PROMPT_TOKEN_OFFSET + d
NUM_DIGITS = 10
VOCAB_SIZE = NUM_LEVELS + NUM_DIGITS
SEQUENCE_LENGTH = 1 + IMAGE_TOKENS

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


# -- tokenization -------------------------------------------------------------------------
def prompt_token(prompt: str) -> int:
    """The prompt token of ``prompt`` (the digit it names).

    Raises:
        ValueError: the prompt names no digit (the model is conditioned on digits only).
    """
    from bench.data import digit_of

    digit = digit_of(prompt)
    if digit is None:
        raise ValueError(
            f"digits-ar is conditioned on a digit, and the prompt {prompt!r} names none; "
            "write e.g. 'a handwritten 3'"
        )
    return PROMPT_TOKEN_OFFSET + digit


def images_to_tokens(images8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """8x8 digits with integer values 0..16, (N, 8, 8), as (N, 64) image tokens (raster order)."""
    x = torch.as_tensor(np.asarray(images8))
    if x.shape[-2:] != (GRID, GRID):
        raise ValueError(f"expected (N, 8, 8) images, got shape {tuple(x.shape)}")
    if not torch.equal(x, x.round()) or x.min() < 0 or x.max() > NUM_LEVELS - 1:
        raise ValueError("pixel values must be integers in 0..16")
    return x.reshape(-1, IMAGE_TOKENS).long()


def tokens_to_images(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 64) image tokens as float (N, 1, 16, 16) in [0, 1], upsampled as :mod:`bench.data`
    upsamples the real digits (bilinear, ``align_corners=False``)."""
    import torch.nn.functional as F

    from bench.data import IMAGE_SIZE

    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != IMAGE_TOKENS:
        raise ValueError(f"expected (N, {IMAGE_TOKENS}) tokens, got shape {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= NUM_LEVELS):
        raise ValueError("image tokens must be in 0..16 (a prompt token was generated)")
    x = (tokens.cpu().float() / (NUM_LEVELS - 1)).reshape(-1, 1, GRID, GRID)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


def upsample_matrix() -> torch.Tensor:
    """The linear map (256, 64) of :mod:`bench.data`'s 8x8 -> 16x16 bilinear upsampling."""
    import torch.nn.functional as F

    from bench.data import IMAGE_SIZE

    basis = torch.eye(IMAGE_TOKENS).reshape(-1, 1, GRID, GRID)
    up = F.interpolate(basis, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return up.reshape(IMAGE_TOKENS, -1).T.double()


_PINV: list[torch.Tensor] = []


def float_images_to_tokens(images: torch.Tensor) -> torch.Tensor:
    """Float images (N, 1, 16, 16) in [0, 1] -> (N, 64) pixel tokens: the least-squares
    inverse of the upsampling, rounded to the nearest of the 17 levels (exact for real
    digits, the nearest token image for augmented ones)."""
    if not _PINV:
        _PINV.append(torch.linalg.pinv(upsample_matrix()))
    flat = images.detach().cpu().double().reshape(images.shape[0], -1)
    levels = (flat @ _PINV[0].T) * (NUM_LEVELS - 1)
    return levels.round().clamp(0, NUM_LEVELS - 1).long()


def raw_split(split: str = "generator") -> tuple[np.ndarray, np.ndarray]:
    """One split of :mod:`bench.data` at its native 8x8 resolution: (images (N, 8, 8) int64 in
    0..16, labels (N,)); the same images, in the same order, as ``bench.data.load_split``."""
    from sklearn.datasets import load_digits

    from bench.data import split_indices  # the split's indices; shared so splits never overlap

    digits = load_digits()
    if split == "all":
        idx = np.arange(len(digits.target))
    elif split in ("generator", "classifier", "heldout"):
        idx = split_indices()[split]
    else:
        raise ValueError(f"unknown split {split!r}; choose generator, classifier, heldout or all")
    return digits.images[idx].astype(np.int64), digits.target[idx].astype(np.int64)


def sequences(split: str = "generator") -> tuple[torch.Tensor, torch.Tensor]:
    """Training sequences of a split: ((N, 65) token ids, (N,) digit labels)."""
    images8, labels = raw_split(split)
    prompt = torch.as_tensor(labels).long().unsqueeze(1) + PROMPT_TOKEN_OFFSET
    return torch.cat([prompt, images_to_tokens(images8)], dim=1), torch.as_tensor(labels)


def token_batches(batch_size: int, seed: int = 0, split: str = "generator") -> Iterator[torch.Tensor]:
    """Endless shuffled (batch, 65) token sequences of a split, reshuffled every epoch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seqs, _ = sequences(split)
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(len(seqs)), 0
    while True:
        idx: list[int] = []
        while len(idx) < batch_size:
            if pos == len(order):
                order, pos = rng.permutation(len(seqs)), 0
            take = min(batch_size - len(idx), len(order) - pos)
            idx.extend(order[pos : pos + take].tolist())
            pos += take
        yield seqs[idx]


# -- the transformers model ---------------------------------------------------------------
def llama_config(layers: int, hidden: int, heads: int, intermediate: int):
    """A ``LlamaConfig`` over the digits vocabulary (nn.Linear layers throughout, so int8
    quantization and structured pruning apply to every projection)."""
    from transformers import LlamaConfig

    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
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
    from transformers import GenerationConfig

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
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    lm = LlamaForCausalLM(llama_config(**arch))
    lm.generation_config = generation_config()
    return lm


def save_lm(lm: torch.nn.Module, directory: Path, dtype: torch.dtype = torch.float16) -> None:
    """Save a copy of ``lm`` with weights cast to ``dtype`` (safetensors via save_pretrained)."""
    import copy

    from bench.models.digits_unet import quiet_loading

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
    from transformers import LlamaForCausalLM

    from bench.models.digits_unet import quiet_loading

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        command = command or (DISTILL_COMMAND if directory.name == "draft" else TRAIN_COMMAND)
        raise FileNotFoundError(f"{what} weights not found in {directory}; train them with `{command}`")
    from bench.models import weight_codec

    with quiet_loading():
        if weight_codec.is_encoded(directory):
            from transformers import LlamaConfig

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
class DigitsAR(ReferenceModel):
    """The embedded ``digits-ar`` reference models around a ``LlamaForCausalLM``.

    Attributes:
        lm: the transformer (the ``denoiser`` role: the network run at every step).
        assistant: the draft model of speculative decoding (role ``draft``), or None.
        decoder: the decoding algorithm a strategy installed (None: plain autoregressive).
        draft_dir: where this model's shipped draft lives.
    """

    lm: Any = field(default=None, repr=False)
    assistant: Any = field(default=None, repr=False)
    decoder: Any = field(default=None, repr=False)
    draft_dir: Path | None = field(default=None, repr=False)
    _classifier: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    # -- generation -------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        step_callback: StepCallback | None = None,
        **call_args: Any,
    ) -> torch.Tensor:
        """One image per (prompt, seed), float NCHW in [0, 1] on the CPU.

        Decoded by the installed decoder (plain autoregressive decoding by default) with the
        sampling settings of ``call_args``; each image draws its randomness from its own seed
        (greedy decoding ignores the seeds). Decoding counts accumulate in
        ``notes["decoding"]``.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        args = {**self.call_args, **call_args}
        ar_decoding.check_call_args(args, _CALL_ARG_NAMES, self.name)
        if not prompts:
            return torch.empty(0, 1, 16, 16)
        prompt = torch.tensor([[prompt_token(p)] for p in prompts], device=self.device)
        decoder = self.decoder if self.decoder is not None else ar_decoding.AUTOREGRESSIVE
        draft = DigitsNetwork(self.assistant) if self.assistant is not None else None
        tokens, stats = ar_decoding.run_decoder(
            decoder, prompt, list(seeds), self.token_grid, DigitsNetwork(self.lm), args,
            draft=draft, step_callback=step_callback, batched=bool(args.get("batched", True)),
        )
        ar_decoding.merge_stats(self.notes.setdefault("decoding", {}), stats)
        return tokens_to_images(tokens)

    def clone(self, share_weights: bool = False) -> DigitsAR:
        """A copy (see :meth:`ReferenceModel.clone`) whose decoding counts start from zero."""
        twin = super().clone(share_weights)
        twin.notes.pop("decoding", None)
        return twin  # type: ignore[return-value]

    # -- the decoding protocol ---------------------------------------------------------
    @property
    def tokens_per_image(self) -> int:
        """Tokens generated per image (64: one per pixel)."""
        return IMAGE_TOKENS

    @property
    def token_grid(self) -> tuple[int, int]:
        """The image-token grid, (rows, cols) in raster order: (8, 8)."""
        return (GRID, GRID)

    def decoding_reason(self) -> str | None:
        """None: this model decodes with :mod:`bench.models.ar_decoding`."""
        return None

    def set_decoder(self, decoder: Any) -> None:
        """Decode with ``decoder`` (None: plain autoregressive decoding)."""
        self.decoder = decoder
        self.notes.pop("decoding", None)

    def default_draft(self) -> torch.nn.Module:
        """A fresh copy of the shipped draft, distilled from the shipped target.

        Raises:
            FileNotFoundError: no draft is shipped; the message names the command making it.
        """
        directory = self.draft_dir if self.draft_dir is not None else DRAFT_DIR
        command = LARGE_COMMAND if directory.parent.name == LARGE_DIR.name else DISTILL_COMMAND
        return load_lm(directory, self.device, what=f"{self.name} draft", command=command)

    # -- what strategies may change ----------------------------------------------------
    def components(self) -> dict[str, torch.nn.Module]:
        """``denoiser``: the transformer; ``draft``: the draft model, once one is attached."""
        out = {"denoiser": self.lm}
        if self.assistant is not None:
            out["draft"] = self.assistant
        return out

    def set_component(self, role: str, module: torch.nn.Module | None) -> None:
        if role == "denoiser":
            if module is None:
                raise ValueError("the denoiser cannot be removed")
            self.lm = module
        elif role == "draft":
            self.assistant = module
        else:
            raise KeyError(f"{self.name} has no component {role!r}; it has ['denoiser', 'draft']")
        self.notes.pop("decoding", None)  # counts of the old modules no longer apply

    # -- data --------------------------------------------------------------------------
    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        from bench.data import balanced_labels, prompt_for

        labels = balanced_labels(n)
        return [prompt_for(d) for d in labels], labels

    def real_images(self, split: str = "heldout") -> torch.Tensor:
        from bench.data import load_split

        return torch.from_numpy(load_split(split).images.copy())  # type: ignore[arg-type]

    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Endless shuffled batches of the ``generator`` split: (images in [0, 1], prompts).
        Token sequences of the same split: :meth:`token_batches`."""
        from bench.models.digits_unet import digits_batches

        return digits_batches("generator", batch_size, seed)

    def token_batches(self, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
        """Endless shuffled (batch, 65) token sequences of the ``generator`` split."""
        return token_batches(batch_size, seed, "generator")

    def token_sequences(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """(N, 65) token sequences of float images (N, 1, 16, 16) and their prompts: the
        prompt token, then the pixel tokens (:func:`float_images_to_tokens`)."""
        prompt = torch.tensor([[prompt_token(p)] for p in prompts])
        return torch.cat([prompt, float_images_to_tokens(images)], dim=1).to(self.device)

    def classifier(self) -> torch.nn.Module | None:
        if self._classifier is None:
            from bench.models.classifier import load_classifier

            self._classifier = load_classifier(self.device)
        return self._classifier

    def describe(self) -> dict[str, Any]:
        """The base summary plus ``tokens_per_image`` (for tokens/s), the decoder and the
        draft's size."""
        out = super().describe()
        out["tokens_per_image"] = IMAGE_TOKENS
        decoder = self.decoder if self.decoder is not None else ar_decoding.AUTOREGRESSIVE
        out["decoder"] = decoder.describe() if hasattr(decoder, "describe") else decoder.name
        if self.assistant is not None:
            out["draft_params"] = sum(p.numel() for p in self.assistant.parameters())
        return out


def load(
    device: str = "cpu", directory: str | Path | None = None, name: str = "digits-ar"
) -> DigitsAR:
    """Load ``digits-ar`` from the weights shipped in the package (offline, about a second).

    Raises:
        FileNotFoundError: the weights are missing; the message names the training command.
    """
    directory = Path(directory) if directory is not None else WEIGHTS_DIR
    lm = load_lm(directory, device)
    return DigitsAR(
        name=name,
        kind="autoregressive",
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
    model = DigitsAR(
        name="digits-ar-large",
        kind="autoregressive",
        device=torch.device(device),
        dtype=torch.float32,
        call_args=dict(DEFAULT_CALL_ARGS),
        lm=lm,
        draft_dir=LARGE_DIR / "draft",
    )
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
