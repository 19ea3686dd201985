"""Where a model's weights come from, as a short identity computed without reading them.

The fingerprint of a model keys the baseline-image cache and the caches of strategies that
train. Hashing every weight byte costs 2 x 67 GB of host reads for an fp32 Flux, so a model
is identified by its source instead:

* ``arch:`` models by their family, size, seed, dtype, the torch version that drew the random
  weights, and every component's configuration (:func:`arch_source`);
* embedded models by the content of their shipped files (a few MB, hashed once per file
  version, :func:`files_source` with ``content=True``);
* ``hf:`` pipelines by their files (:func:`files_source`): names and sizes, the blob hashes
  that a Hugging Face cache names its files by, the header (names, dtypes, shapes, offsets)
  of every safetensors file, the modification time of large files, and the content of small
  ones. None of it grows with the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Files at most this large are hashed whole even when content hashing is off.
SMALL_FILE_BYTES = 1 << 20
#: diffusers' list of config keys left at their defaults (set order: sorted here).
_DEFAULTS_KEY = "_use_default_values"
_BLOB_NAME = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")


def digest(*parts: Any) -> str:
    """A 16-hex-digit hash of ``parts`` (JSON-encoded; anything else by its ``str``)."""
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@lru_cache(maxsize=4096)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes (cached by path, size and modification time)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def safetensors_header(path: str | os.PathLike) -> bytes:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes and offsets)."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            return b""
        (length,) = struct.unpack("<Q", raw)
        return fh.read(min(length, 100 << 20))


def _file_identity(path: Path, content: bool) -> Any:
    stat = path.stat()
    if path.is_symlink():
        target = Path(os.path.realpath(path)).name
        if _BLOB_NAME.match(target):  # a Hugging Face cache blob is named by its hash
            return ["blob", target, stat.st_size]
    if content or stat.st_size <= SMALL_FILE_BYTES:
        return ["sha256", _content_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)]
    identity: list[Any] = ["size+mtime", stat.st_size, stat.st_mtime_ns]
    if path.suffix == ".safetensors":
        identity.append(hashlib.sha256(safetensors_header(path)).hexdigest())
    return identity


def files_source(folder: str | os.PathLike, content: bool = False) -> str:
    """The identity of the files under ``folder`` (see the module's text); ``content=True``
    hashes every file's bytes."""
    root = Path(folder)
    entries = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            entries.append([str(path.relative_to(root)), _file_identity(path, content)])
    return "files:" + digest(entries)


def module_config(module: Any) -> Any:
    """A module's configuration as plain data: diffusers' ``config`` dict, transformers'
    ``config.to_dict()``, else the class name alone.

    diffusers lists the keys left at their defaults (``_use_default_values``) in the order of
    a set, which changes from one process to the next: that list is sorted, so the identity
    of an ``arch:`` model is the same in every process."""
    config = getattr(module, "config", None)
    if config is None:
        return None
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
    elif isinstance(config, dict):
        data = dict(config)
    else:
        return str(config)
    if isinstance(data.get(_DEFAULTS_KEY), list):
        data = {**data, _DEFAULTS_KEY: sorted(data[_DEFAULTS_KEY])}
    return data


def arch_source(family: str, size: str, seed: int, dtype: Any, components: dict[str, Any]) -> str:
    """The identity of a random-weight architecture model."""
    import torch

    configs = {role: [type(m).__name__, module_config(m)] for role, m in sorted(components.items())}
    return "arch:" + digest(family, size, seed, str(dtype), torch.__version__, configs)


__all__ = ["arch_source", "digest", "files_source", "module_config", "safetensors_header"]
