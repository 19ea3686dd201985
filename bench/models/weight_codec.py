"""Shipped weights stored as int8 with one scale per row, decoded to float on load.

The repository's tracked files travel to GPU machines with a 64 MiB limit, wheels included, so
the largest embedded weights are kept small: every floating-point matrix becomes int8 codes
and a float16 scale per output row (absmax / 127; the error of a weight is at most half a
step, 0.4% of its row's largest magnitude), vectors stay float16. ``digits-ar-large`` shrinks
from 44 to 23 MiB this way; its figures were measured on the decoded weights.

    python -m bench.models.weight_codec FOLDER    (re-encode FOLDER/model.safetensors)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

#: The encoded file's name beside a model's config.json.
ENCODED_NAME = "model-int8.safetensors"
#: Suffix of the key holding a matrix's row scales.
SCALE_SUFFIX = ".__scale__"
_FORMAT = "int8-rowwise-absmax/v1"


def encode(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every floating-point matrix as int8 codes plus row scales."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        t = tensor.detach().cpu().float()
        if not tensor.is_floating_point() or t.ndim < 2:
            out[key] = tensor.detach().cpu().half() if tensor.is_floating_point() else tensor
            continue
        rows = t.reshape(t.shape[0], -1)
        scale = (rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0).half()
        codes = torch.round(rows / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
        out[key] = codes.reshape(t.shape).contiguous()
        out[key + SCALE_SUFFIX] = scale
    return out


def decode(state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The float weights of an :func:`encode`-d state dict, in ``dtype``."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(key + SCALE_SUFFIX)
        if scale is not None:
            rows = tensor.reshape(tensor.shape[0], -1).float() * scale.float()[:, None]
            out[key] = rows.reshape(tensor.shape).to(dtype)
        else:
            out[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


def save_encoded(state: dict[str, torch.Tensor], folder: str | Path) -> Path:
    """Write ``state`` encoded to ``folder``/:data:`ENCODED_NAME`."""
    from safetensors.torch import save_file

    path = Path(folder) / ENCODED_NAME
    save_file(encode(state), str(path), metadata={"format": "pt", "accelbench": json.dumps({"encoding": _FORMAT})})
    return path


def load_encoded(folder: str | Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The decoded state dict stored in ``folder``/:data:`ENCODED_NAME`."""
    from safetensors.torch import load_file

    return decode(load_file(str(Path(folder) / ENCODED_NAME)), dtype)


def is_encoded(folder: str | Path) -> bool:
    """True when ``folder`` holds encoded weights."""
    return (Path(folder) / ENCODED_NAME).is_file()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Re-encode FOLDER/model.safetensors as int8 rows.")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    from safetensors.torch import load_file

    source = args.folder / "model.safetensors"
    state = load_file(str(source))
    path = save_encoded(state, args.folder)
    source.unlink()
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB (was model.safetensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["ENCODED_NAME", "decode", "encode", "is_encoded", "load_encoded", "save_encoded"]
