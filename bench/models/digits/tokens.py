"""How ``digits-ar`` writes a digit as tokens (no learned codebook: the data is already discrete).

* image tokens ``0..16``: the 8x8 handwritten digits have integer pixel values 0..16, so each
  pixel is one token, read in raster order (64 tokens per image, an 8x8 token grid);
* prompt tokens ``17..26``: the digit the prompt asks for (``"a handwritten 3"`` -> 20);
* a sequence is ``[prompt token, 64 image tokens]`` (65 tokens).

Decoded tokens are upsampled to 16x16 in [0, 1] exactly as :mod:`bench.models.digits.data`
prepares the real images, so the digit classifier, PSNR/SSIM and FID/KID apply unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.errors import ModelError
from bench.models.digits.data import IMAGE_SIZE, digit_of, raw_split
from bench.models.digits.domain import shuffled_batches

GRID = 8  #: the digits are 8x8 pixels
NUM_LEVELS = 17  #: pixel values 0..16, one token each
IMAGE_TOKENS = GRID * GRID  #: tokens generated per image
PROMPT_TOKEN_OFFSET = NUM_LEVELS  #: prompt token of digit d is PROMPT_TOKEN_OFFSET + d
NUM_DIGITS = 10
VOCAB_SIZE = NUM_LEVELS + NUM_DIGITS
SEQUENCE_LENGTH = 1 + IMAGE_TOKENS


def prompt_token(prompt: str) -> int:
    """The prompt token of ``prompt`` (the digit it names).

    Raises:
        ModelError: the prompt names no digit (the model is conditioned on digits only).
    """
    digit = digit_of(prompt)
    if digit is None:
        raise ModelError(
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
    """(N, 64) image tokens as float (N, 1, 16, 16) in [0, 1], upsampled as :mod:`bench.models.digits.data`
    upsamples the real digits (bilinear, ``align_corners=False``)."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != IMAGE_TOKENS:
        raise ValueError(f"expected (N, {IMAGE_TOKENS}) tokens, got shape {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= NUM_LEVELS):
        raise ValueError("image tokens must be in 0..16 (a prompt token was generated)")
    x = (tokens.cpu().float() / (NUM_LEVELS - 1)).reshape(-1, 1, GRID, GRID)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


def upsample_matrix() -> torch.Tensor:
    """The linear map (256, 64) of :mod:`bench.models.digits.data`'s 8x8 -> 16x16 bilinear upsampling."""
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


def sequences(split: str = "generator") -> tuple[torch.Tensor, torch.Tensor]:
    """Training sequences of a split: ((N, 65) token ids, (N,) digit labels)."""
    images8, labels = raw_split(split)
    prompt = torch.as_tensor(labels).long().unsqueeze(1) + PROMPT_TOKEN_OFFSET
    return torch.cat([prompt, images_to_tokens(images8)], dim=1), torch.as_tensor(labels)


def token_batches(batch_size: int, seed: int = 0, split: str = "generator") -> Iterator[torch.Tensor]:
    """Endless shuffled (batch, 65) token sequences of a split, reshuffled every epoch."""
    seqs, _ = sequences(split)
    for idx in shuffled_batches(len(seqs), batch_size, seed):
        yield seqs[idx]


__all__ = [
    "GRID",
    "IMAGE_TOKENS",
    "NUM_DIGITS",
    "NUM_LEVELS",
    "PROMPT_TOKEN_OFFSET",
    "SEQUENCE_LENGTH",
    "VOCAB_SIZE",
    "float_images_to_tokens",
    "images_to_tokens",
    "prompt_token",
    "sequences",
    "token_batches",
    "tokens_to_images",
    "upsample_matrix",
]
