"""The baseline's images, computed once per (model weights, prompts, seeds, call args).

Every strategy is scored against the same baseline images; generating them is the slowest
part of a short run, so they are cached on disk as safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence

import torch

from bench.cache import cache_dir
from bench.models.base import ReferenceModel


def key(model: ReferenceModel, prompts: Sequence[str], seeds: Sequence[int]) -> str:
    """Cache key: the model's weights and call args, the prompts, the seeds, the device."""
    payload = json.dumps(
        {
            "model": model.fingerprint(),
            "prompts": list(prompts),
            "seeds": [int(s) for s in seeds],
            "device": str(model.device),
            "dtype": str(model.dtype),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def get(k: str) -> torch.Tensor | None:
    """The cached images for key ``k``, or None."""
    from safetensors.torch import load_file

    path = cache_dir("baselines") / f"{k}.safetensors"
    if not path.exists():
        return None
    try:
        return load_file(path)["images"]
    except Exception:  # a torn file from a killed run: recompute
        return None


def put(k: str, images: torch.Tensor) -> None:
    """Store ``images`` under ``k`` atomically (write to a temp file, then rename)."""
    from safetensors.torch import save_file

    folder = cache_dir("baselines")
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    save_file({"images": images.contiguous().cpu()}, tmp)
    os.replace(tmp, folder / f"{k}.safetensors")
