"""Settings of the quality metrics that a run can change; saved with every result.

This module imports no torch: it is part of :class:`bench.core.config.RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import ConfigError

#: CLIP backbone of the CLIP score unless configured (torchmetrics' default too). Scores of
#: different backbones are not comparable.
DEFAULT_CLIP_BACKBONE = "openai/clip-vit-large-patch14"
#: LPIPS backbone unless configured (the LPIPS paper's recommended one).
DEFAULT_LPIPS_NET = "alex"
#: Draws of real images behind each noise floor.
DEFAULT_NOISE_FLOOR_SEEDS = 10


@dataclass(frozen=True)
class QualityConfig:
    """How the distribution and hub metrics are computed.

    The number of generated images scored is the run's ``quality_images``; the real
    reference is the model's ``heldout`` split (297 digits on the embedded models) or, for
    hub models, ``real_images_dir``.

    Attributes:
        kid_subset_size: images per KID subset; None: 100, or the smaller sample if smaller.
        kid_subsets: KID subsets averaged; their spread is ``kid_std``.
        kid_seed: seed of the KID subset draws.
        noise_floor_seeds: draws of real images behind each noise floor (0 turns it off).
        real_images_dir: a folder of real images for Inception FID/KID on hub models.
        clip_backbone: CLIP model of the CLIP score (hub repo id or local folder).
        lpips_net: LPIPS backbone: alex, vgg or squeeze.
        distribution_metrics: compute FID/KID (False: fidelity and adherence only).
    """

    kid_subset_size: int | None = None
    kid_subsets: int = 100
    kid_seed: int = 0
    noise_floor_seeds: int = DEFAULT_NOISE_FLOOR_SEEDS
    real_images_dir: str | None = None
    clip_backbone: str = DEFAULT_CLIP_BACKBONE
    lpips_net: str = DEFAULT_LPIPS_NET
    distribution_metrics: bool = True

    def __post_init__(self) -> None:
        if self.kid_subset_size is not None and self.kid_subset_size < 2:
            raise ConfigError(f"kid_subset_size must be >= 2, got {self.kid_subset_size}")
        if self.kid_subsets < 1:
            raise ConfigError(f"kid_subsets must be >= 1, got {self.kid_subsets}")
        if self.noise_floor_seeds < 0 or self.noise_floor_seeds == 1:
            raise ConfigError(
                f"noise_floor_seeds must be 0 (off) or >= 2, got {self.noise_floor_seeds}"
            )
        if self.lpips_net not in ("alex", "vgg", "squeeze"):
            raise ConfigError(f"lpips_net must be alex, vgg or squeeze, got {self.lpips_net!r}")
