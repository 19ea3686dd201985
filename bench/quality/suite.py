"""Distribution and hub metrics for one run: built once per model, reused for every stack.

The runner scores each strategy's quality images apart from the timed loop; this class
holds what is expensive and shared across stacks (the real images' features, the noise
floor, the loaded hub networks) and records, in words, why a metric was not computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bench.core.quality_config import QualityConfig
from bench.models.base import has_data, no_data_reason
from bench.quality import noise_floor
from bench.quality.distribution import DistributionConfig, classifier_scorer
from bench.quality.hub import (
    HubMetricUnavailable,
    HubQuality,
    inception_scorer,
    inception_weights,
    load_image_folder,
)
from bench.quality.noise_floor import real_labels
from bench.quality.video import frames_as_channels


class QualitySuite:
    """FID/KID (domain features or Inception), their noise floor, CLIP score and LPIPS.

    Args:
        model: the (baseline) reference model: its real images and classifier are used.
        config: the run's quality settings.
        hub: whether ``model`` is a hub pipeline (Inception features, CLIP score, LPIPS)
            rather than an embedded model (its digit classifier's features).
        use_cache: reuse a noise floor cached on disk.
    """

    def __init__(
        self, model: Any, config: QualityConfig | None = None, hub: bool = False, use_cache: bool = True
    ) -> None:
        self.model = model
        self.config = config or QualityConfig()
        self.hub = hub
        self.use_cache = use_cache
        self.device = getattr(model, "device", None) or torch.device("cpu")
        self.unavailable: dict[str, str] = {}
        self._scorer: Any = None
        self._scorer_tried = False
        self._real: torch.Tensor | None = None
        self._floors: dict[int, dict[str, Any] | None] = {}
        self._hub_metrics: Any = None
        if hub:
            self._hub_metrics = HubQuality(
                self.config.clip_backbone, self.config.lpips_net, device=self.device
            )

    # -- distribution --------------------------------------------------------------------
    def _mark_distribution_unavailable(self, reason: str) -> None:
        for name in ("fid", "kid", "kid_std"):
            self.unavailable[name] = reason

    def _real_images(self) -> torch.Tensor | None:
        if self.hub and self.config.real_images_dir:
            return load_image_folder(self.config.real_images_dir)
        if not has_data(self.model):
            self._mark_distribution_unavailable(
                no_data_reason(self.model, "real images for distribution metrics"))
            return None
        return frames_as_channels(self.model.real_images("heldout"))

    def scorer(self) -> Any:
        """The run's :class:`~bench.quality.distribution.DistributionScorer`, or None (the
        reason is in :attr:`unavailable`)."""
        if self._scorer_tried:
            return self._scorer
        self._scorer_tried = True
        dist = DistributionConfig(kid_subset_size=self.config.kid_subset_size,
                                  kid_subsets=self.config.kid_subsets, seed=self.config.kid_seed)
        if self.hub:
            try:
                inception_weights()
            except HubMetricUnavailable as exc:
                self._mark_distribution_unavailable(str(exc))
                return None
            real = self._real_images()
            if real is None:
                return None
            self._scorer = inception_scorer(real, dist, self.device)
        else:
            classifier = self.model.classifier()
            if classifier is None:
                self._mark_distribution_unavailable(
                    f"{self.model.name} has no domain classifier to take FID/KID features from"
                )
                return None
            real = self._real_images()
            if real is None:
                return None

            self._scorer = classifier_scorer(classifier, real, dist, real_labels(self.model, real))
        self._real = real
        return self._scorer

    def noise_floor(self, n: int) -> dict[str, Any] | None:
        """FID/KID between real samples at ``n`` images, across seeds (cached per ``n``)."""
        if n in self._floors:
            return self._floors[n]
        seeds = self.config.noise_floor_seeds
        scorer = self.scorer()
        floor = None
        if seeds and scorer is not None:
            if not self.hub:
                floor = noise_floor.for_model(self.model, scorer, n, seeds, self.use_cache)
            else:
                floor = noise_floor.measure_halves(
                    self._real, scorer.feature, n, seeds, scorer.config
                )
        self._floors[n] = floor
        return floor

    # -- everything ------------------------------------------------------------------------
    def score(
        self, images: torch.Tensor, reference: torch.Tensor | None, prompts: list[str],
        labels: Sequence[int] | None = None,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Values (fid, kid, kid_std; clip_score, lpips on hub models) and what they were
        computed on, including ``unavailable``: metric -> why it was not computed. ``labels``
        are the classes the prompts asked for, where the domain has them (class-stratified
        KID)."""
        values: dict[str, float] = {}
        details: dict[str, Any] = {}
        if not self.config.distribution_metrics:
            self._mark_distribution_unavailable("turned off for this run")
        elif len(images) < 2:
            self._mark_distribution_unavailable(
                f"FID/KID need at least 2 quality images, got {len(images)}"
            )
        else:
            scorer = self.scorer()
            if scorer is not None:
                values.update(scorer.score(images, labels))
                details["distribution"] = scorer.describe(len(images), labels)
                if why := scorer.kid_unavailable(labels):
                    self.unavailable.update(kid=why, kid_std=why)
        if self._hub_metrics is not None:
            values.update(self._hub_metrics.score(images, reference, prompts))
            details["hub"] = self._hub_metrics.describe()
            self.unavailable.update(self._hub_metrics.unavailable)
        details["unavailable"] = {k: v for k, v in self.unavailable.items() if k not in values}
        return values, details
