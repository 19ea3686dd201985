"""The baseline's images, computed once per (model weights, prompts, seeds, call args).

Every strategy is scored against the same baseline images; generating them is the slowest
part of a short run, so they are cached on disk as safetensors.

The key holds everything the images depend on: the model's weights and call arguments, the
prompts, seeds, device and dtype, and the code that generated them (:func:`code_identity`):
accelbench's version with a hash of its own sources, and the versions of the libraries that
run the pipelines (torch, diffusers, transformers). A changed pipeline therefore never scores
against images its old code made.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from bench.core.cache import cache_dir
from bench.models.base import ReferenceModel

#: The libraries whose versions key the images besides accelbench itself.
LIBRARIES = ("torch", "diffusers", "transformers")
#: The packages whose sources are hashed into the key (everything a pipeline's call runs).
SOURCE_PACKAGES = ("bench", "strategies")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 of every ``.py`` file of :data:`SOURCE_PACKAGES`, with its relative path.

    Exact whatever the checkout's state (committed, edited, installed from a wheel): a commit
    alone would miss uncommitted edits. About 1 MB of reads, once per process (so one run
    keys all its images with the same code even if the files change meanwhile).
    """
    import importlib

    digest = hashlib.sha256()
    for name in SOURCE_PACKAGES:
        root = Path(importlib.import_module(name).__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).as_posix()
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_identity() -> dict[str, str | None]:
    """The code that generates the images: accelbench's version and source hash, and the
    versions of :data:`LIBRARIES` (None where one is not installed)."""
    out: dict[str, str | None] = {"accelbench": _version("accelbench"), "sources": source_hash()}
    out.update({name: _version(name) for name in LIBRARIES})
    return out


def key(model: ReferenceModel, prompts: Sequence[str], seeds: Sequence[int]) -> str:
    """Cache key: the model's weights and call args, the prompts, the seeds, the device,
    the dtype and the code (:func:`code_identity`)."""
    payload = json.dumps(
        {
            "model": model.fingerprint(),
            "prompts": list(prompts),
            "seeds": [int(s) for s in seeds],
            "device": str(model.device),
            "dtype": str(model.dtype),
            "code": code_identity(),
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
