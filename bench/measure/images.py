"""Saving generated images: grids as PNG, for the run directory and the report."""

from __future__ import annotations

from pathlib import Path

import torch

#: Small images are upscaled in grids until a cell is about this many pixels on its long side.
GRID_CELL_PX = 64


def save_grid(images: torch.Tensor, path: str | Path, ncol: int = 10, scale: int | None = None) -> Path:
    """Save NCHW images in [0, 1] as one PNG grid, nearest-neighbour upscaled by ``scale``
    (None: small images up to about :data:`GRID_CELL_PX` pixels, large ones as they are)."""
    from PIL import Image

    if scale is None:
        scale = max(1, GRID_CELL_PX // max(images.shape[-2:]))
    grid = _grid(images, ncol=ncol, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.numpy()).save(path)
    return path


def _grid(images: torch.Tensor, ncol: int, scale: int, pad: int = 1) -> torch.Tensor:
    if images.ndim != 4:
        raise ValueError(f"expected NCHW images, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    x = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    if c == 1:
        x = x.expand(n, 3, h, w)
    ncol = max(1, min(ncol, n))
    nrow = (n + ncol - 1) // ncol
    grid = torch.full((3, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[i, :3]
    return grid.permute(1, 2, 0).contiguous()
