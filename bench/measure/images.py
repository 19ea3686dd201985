"""Saving generated images: grids as PNG, for the run directory and the report."""

from __future__ import annotations

from pathlib import Path

import torch

#: Small images are upscaled in grids until a cell is about this many pixels on its long side.
GRID_CELL_PX = 64
#: Frames per second of an animated grid whose model declares no frame rate.
DEFAULT_FRAME_RATE = 8.0


def save_grid(images: torch.Tensor, path: str | Path, ncol: int = 10, scale: int | None = None,
              frame_rate: float | None = None) -> Path:
    """Save NCHW images in [0, 1] as one PNG grid, nearest-neighbour upscaled by ``scale``
    (None: small images up to about :data:`GRID_CELL_PX` pixels, large ones as they are).

    Videos (N, T, C, H, W) become an animated PNG (APNG: every browser plays it, and a viewer
    without animation shows the first frame): frame t is the grid of every video's frame t,
    shown for ``1 / frame_rate`` seconds (default 8 frames per second), looping."""
    from PIL import Image

    if scale is None:
        scale = max(1, GRID_CELL_PX // max(images.shape[-2:]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if images.ndim == 5:
        frames = [Image.fromarray(_grid(images[:, t], ncol=ncol, scale=scale).numpy())
                  for t in range(images.shape[1])]
        duration = round(1000 / (frame_rate or DEFAULT_FRAME_RATE))
        frames[0].save(path, format="PNG", save_all=True, append_images=frames[1:],
                       duration=duration, loop=0)
        return path
    Image.fromarray(_grid(images, ncol=ncol, scale=scale).numpy()).save(path)
    return path


def frame_count(path: str | Path) -> int:
    """Frames of a saved grid (1 for a still image)."""
    from PIL import Image

    with Image.open(path) as im:
        return int(getattr(im, "n_frames", 1))


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
