"""What every architecture family shares, diffusion or autoregressive: seeded construction on
any device (``meta`` included), the size check, and why the models have no data."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.core.errors import ModelError
from bench.core.kinds import ModelKind

#: Why arch models have no data, for every method that would need it.
NO_DATA = (
    "random-weight architecture models have no data: their images mean nothing, so "
    "distribution quality (FID/KID), prompt adherence and training are unavailable on them; "
    "fidelity to the same model's baseline (numerical deviation) is the one meaningful "
    "quality number"
)


def component_seed(seed: int, component: str) -> int:
    """The random seed of one component (independent of the others' build order)."""
    return seed * 1_000_003 + zlib.crc32(component.encode())


@contextlib.contextmanager
def building(device: str | torch.device, seed: int, component: str) -> Iterator[None]:
    """Build one component: its random initialisation is seeded from ``seed`` and the
    component's name (so components do not depend on each other's build order), and its
    tensors are created on ``device`` (``meta``: shapes only, no memory)."""
    torch.manual_seed(component_seed(seed, component))
    with torch.device(device):
        yield


def is_meta(device: str | torch.device) -> bool:
    """True for the ``meta`` device (shapes without storage)."""
    return torch.device(device).type == "meta"


def check_size(size: str) -> None:
    """Refuse sizes other than ``full`` and ``tiny``."""
    if size not in ("full", "tiny"):
        raise ModelError(f"unknown size {size!r}; architecture models come in 'full' and 'tiny'")


@dataclass
class ArchIdentity:
    """What an architecture model is, for the record (mixed in before the model class).

    Attributes:
        family: the architecture family (``sdxl``...).
        size: ``full`` (the published sizes) or ``tiny`` (same classes and layouts, scaled
            down for CPUs).
        reproduces: the published model whose configuration is built (a hub repo id).
        note: what else a reader of the results should know (e.g. which variant).
    """

    family: str = ""
    size: str = "full"
    reproduces: str = ""
    note: str = ""

    no_data: ClassVar[str] = NO_DATA

    def identity(self) -> dict[str, Any]:
        """The family, size and published model reproduced (and the note), for
        ``describe()``."""
        size = ("published sizes" if self.size == "full"
                else "tiny variant: same classes and layouts, scaled down")
        out = {"family": self.family, "size": self.size, "reproduces": self.reproduces,
               "architecture": f"{self.reproduces} ({size}), random weights"}
        if self.note:
            out["note"] = self.note
        return out


def arch_fields(family: str, size: str, device: str, kind: ModelKind,
                call_args: dict[str, Any], reproduces: str, note: str = "") -> dict[str, Any]:
    """The constructor arguments every architecture model of ``family`` at ``size`` shares
    (fp32 on ``device``; :func:`bench.models.arch.load` casts it afterwards)."""
    return {
        "name": f"arch:{family}" + ("@tiny" if size == "tiny" else ""),
        "kind": kind,
        "device": torch.device(device),
        "dtype": torch.float32,
        "call_args": dict(call_args),
        "family": family,
        "size": size,
        "reproduces": reproduces,
        "note": note,
    }


__all__ = ["NO_DATA", "ArchIdentity", "arch_fields", "building", "check_size", "component_seed",
           "is_meta"]
