"""Distribution metrics: are the generated images still like real ones? FID and KID.

Both come from torchmetrics (:class:`~torchmetrics.image.fid.FrechetInceptionDistance`,
:class:`~torchmetrics.image.kid.KernelInceptionDistance`) with the domain's own feature
extractor instead of Inception v3: on the embedded models the digit classifier's
penultimate layer (64 features), wrapped by :class:`ClassifierFeatures`.

What torchmetrics asks of a custom feature extractor (torchmetrics 1.9, ``image/fid.py``):
an ``nn.Module`` whose ``forward(imgs)`` returns ``(N, d)`` features. If it has an integer
``num_features`` attribute, FID sizes its running sums from it; otherwise it calls the module
once on a dummy image built from ``input_img_size`` and ``normalize`` (float32 in [0, 1]
when ``normalize=True``, uint8 otherwise). With a custom module, ``update`` passes the images
through unchanged: ``normalize=True`` does *not* rescale them (that happens only for the
built-in Inception). :class:`ClassifierFeatures` therefore exposes ``num_features`` and
accepts both float images in [0, 1] and uint8 images in [0, 255] itself.

KID draws its subsets with the global torch RNG; :class:`DistributionScorer` seeds a forked
RNG so that the same images always give the same KID. Where both samples carry class labels
(the embedded models: prompts ask for each digit equally often, and the real images are
labelled), torchmetrics' i.i.d. estimate is biased downwards by the fixed class composition;
KID is then the class-stratified estimate of :mod:`bench.quality.stratified_kid`, and
``kid_std`` its jackknife standard error.

FID is biased upwards at small sample sizes, so it is only comparable between runs that use
the same number of generated and real images; the record stores both counts, and
:mod:`bench.quality.noise_floor` measures the spread at exactly those counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bench.quality.stratified_kid import METHOD, stratified_kid

#: KID subset size used when the samples allow it (both samples must hold at least this many).
DEFAULT_KID_SUBSET_SIZE = 100
#: KID subsets averaged (torchmetrics' default).
DEFAULT_KID_SUBSETS = 100


class MemoFeatures(nn.Module):
    """A feature extractor that keeps the features of the last batch it saw.

    FID and KID each call their extractor on the same batch; while that very tensor is
    passed again unchanged, its features are reused instead of recomputed. Subclasses
    implement :meth:`_extract`.
    """

    num_features: int

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (N, num_features), float64, on the CPU."""
        last = getattr(self, "_last", None)
        if last is not None and last[0] is images and last[1] == images._version:
            return last[2]
        features = self._extract(images)
        self._last = (images, images._version, features)
        return features

    def _extract(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ClassifierFeatures(MemoFeatures):
    """A classifier's penultimate features as a torchmetrics feature extractor.

    Wraps any module with a ``features(x) -> (N, d)`` method (such as
    :class:`~bench.models.digits.classifier.DigitClassifier`). Accepts float images in [0, 1] or
    uint8 images in [0, 255], NCHW, and returns float64 features, so FID's covariances and
    KID's polynomial kernel are computed in double precision.

    Attributes:
        num_features: the feature dimension ``d`` (read by torchmetrics).
    """

    def __init__(self, classifier: nn.Module, batch_size: int = 512) -> None:
        super().__init__()
        if not callable(getattr(classifier, "features", None)):
            raise TypeError(
                f"{type(classifier).__name__} has no features(x) method to take FID/KID features from"
            )
        self.classifier = classifier.eval()
        self.batch_size = batch_size
        dim = getattr(classifier, "feature_dim", None)
        if dim is None:
            raise TypeError(f"{type(classifier).__name__} does not declare its feature_dim")
        self.num_features = int(dim)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        """Stay in eval mode: torchmetrics must never switch dropout or batch norm on."""
        return super().train(False)

    def _extract(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected NCHW images, got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            raise TypeError(f"expected float images in [0, 1] or uint8, got {images.dtype}")
        device = next(self.classifier.parameters()).device
        out = [
            self.classifier.features(chunk.to(device, torch.float32)).double().cpu()
            for chunk in images.split(self.batch_size)
        ]
        return torch.cat(out)


@dataclass(frozen=True)
class DistributionConfig:
    """How FID and KID are computed.

    Attributes:
        kid_subset_size: images per KID subset; None takes :data:`DEFAULT_KID_SUBSET_SIZE` or
            the smaller sample if that is smaller. An explicit value larger than either
            sample is an error.
        kid_subsets: KID subsets averaged (their spread is reported as ``kid_std``).
        seed: seeds the KID subset draws.
    """

    kid_subset_size: int | None = None
    kid_subsets: int = DEFAULT_KID_SUBSETS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kid_subset_size is not None and self.kid_subset_size < 2:
            raise ValueError(f"kid_subset_size must be >= 2, got {self.kid_subset_size}")
        if self.kid_subsets < 1:
            raise ValueError(f"kid_subsets must be >= 1, got {self.kid_subsets}")

    def subset_size(self, n_fake: int, n_real: int) -> int:
        """The KID subset size for samples of ``n_fake`` and ``n_real`` images."""
        smaller = min(n_fake, n_real)
        if self.kid_subset_size is None:
            size = min(DEFAULT_KID_SUBSET_SIZE, smaller)
        elif self.kid_subset_size > smaller:
            raise ValueError(
                f"KID subset size {self.kid_subset_size} is larger than the smaller sample "
                f"({n_fake} generated, {n_real} real images); lower it or score more images"
            )
        else:
            size = self.kid_subset_size
        if size < 2:
            raise ValueError(f"KID needs at least 2 images in each sample, got {n_fake} and {n_real}")
        return size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_images(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what} must be an NCHW tensor, got {shape}")
    if len(images) < 2:
        raise ValueError(f"FID/KID need at least 2 {what}, got {len(images)}")


class DistributionScorer:
    """FID and KID of generated images against a fixed set of real images.

    The real images' features are extracted once, when the scorer is built; every
    :meth:`score` call then only extracts the generated images' features. Build one per
    (feature extractor, real images) and reuse it for every strategy of a run.

    Args:
        real: real images (NCHW, float in [0, 1] or uint8), the reference distribution.
        feature: the torchmetrics feature extractor (e.g. :class:`ClassifierFeatures`).
        config: KID subset settings and seed.
        feature_name: how the features are described in results.
        real_labels: the real images' classes, where known: with the generated images'
            labels, KID is then the class-stratified estimate.
    """

    def __init__(
        self,
        real: torch.Tensor,
        feature: nn.Module,
        config: DistributionConfig | None = None,
        feature_name: str | None = None,
        real_labels: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        _check_images(real, "real images")
        self.config = config or DistributionConfig()
        self.n_real = len(real)
        self.feature = feature
        self.feature_name = feature_name or type(feature).__name__
        self._fid = FrechetInceptionDistance(feature=feature, normalize=True, reset_real_features=False)
        with warnings.catch_warnings():  # "KID keeps all features in memory": small here
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self._kid = KernelInceptionDistance(
                feature=feature,
                normalize=True,
                reset_real_features=False,
                subsets=self.config.kid_subsets,
                subset_size=DEFAULT_KID_SUBSET_SIZE,  # set per call in score()
            )
        self._fid.update(real, real=True)
        self._kid.update(real, real=True)
        self.real_labels = None if real_labels is None else torch.as_tensor(real_labels).long()
        if self.real_labels is not None and len(self.real_labels) != self.n_real:
            raise ValueError(f"{len(self.real_labels)} real labels for {self.n_real} real images")
        self._real_features: torch.Tensor | None = None

    def stratified(self, labels: Sequence[int] | None) -> bool:
        """Whether KID of images with these ``labels`` is the class-stratified estimate."""
        return labels is not None and self.real_labels is not None

    def kid_unavailable(self, labels: Sequence[int] | None) -> str | None:
        """Why KID of images with these ``labels`` cannot be estimated (None when it can): the
        class-stratified estimate needs two images of every class the prompts ask for, and
        the i.i.d. estimate is biased for a sample of fixed class composition."""
        if not self.stratified(labels):
            return None
        assert labels is not None and self.real_labels is not None
        counts = torch.bincount(torch.as_tensor(list(labels)).long())
        short = [c for c, n in enumerate(counts.tolist()) if 0 < n < 2
                 or (n and int((self.real_labels == c).sum()) < 2)]
        if not short:
            return None
        return (f"KID of images whose prompts fix the class composition needs at least 2 images "
                f"of each class ({len(labels)} quality images leave class(es) "
                f"{', '.join(map(str, short[:5]))} with fewer); the i.i.d. estimate would be "
                "biased downwards, so it is left out: score more quality images")

    def score(self, images: torch.Tensor, labels: Sequence[int] | None = None) -> dict[str, float]:
        """``{"fid", "kid", "kid_std"}`` of ``images`` against the real images. With the
        images' class ``labels`` (and real labels), KID is class-stratified and ``kid_std``
        its standard error; otherwise torchmetrics' estimate and its spread over subsets.
        Only ``{"fid"}`` where :meth:`kid_unavailable` says why."""
        _check_images(images, "generated images")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} generated images")
        self._fid.reset()
        self._kid.reset()
        self._fid.update(images, real=False)
        fid = float(self._fid.compute())
        if self.kid_unavailable(labels):
            return {"fid": fid}
        if self.stratified(labels):
            if self._real_features is None:
                self._real_features = torch.cat(list(self._kid.real_features))
            kid, se = stratified_kid(self.feature(images), labels, self._real_features,
                                     self.real_labels, seed=self.config.seed)
            return {"fid": fid, "kid": kid, "kid_std": math.nan if se is None else se}
        self._kid.update(images, real=False)
        self._kid.subset_size = self.config.subset_size(len(images), self.n_real)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            kid_mean, kid_std = self._kid.compute()
        return {"fid": fid, "kid": float(kid_mean), "kid_std": float(kid_std)}

    def describe(self, n_fake: int, labels: Sequence[int] | None = None) -> dict[str, Any]:
        """What the numbers were computed on, saved with every result."""
        out: dict[str, Any] = {
            "features": self.feature_name,
            "n_generated": int(n_fake),
            "n_real": self.n_real,
        }
        if self.stratified(labels):
            out.update(kid_method=METHOD, kid_std_means="jackknife standard error of KID",
                       kid_seed=self.config.seed)
            return out
        out.update(
            kid_method="torchmetrics KernelInceptionDistance (i.i.d. samples), mean over subsets",
            kid_std_means="standard deviation of KID over its subsets",
            kid_subset_size=self.config.subset_size(n_fake, self.n_real),
            kid_subsets=self.config.kid_subsets,
            kid_seed=self.config.seed,
        )
        return out


def classifier_scorer(
    classifier: nn.Module, real: torch.Tensor, config: DistributionConfig | None = None,
    real_labels: Sequence[int] | torch.Tensor | None = None,
) -> DistributionScorer:
    """A :class:`DistributionScorer` on a domain classifier's penultimate features."""
    feature = ClassifierFeatures(classifier)
    name = f"{type(classifier).__name__} penultimate ({feature.num_features})"
    return DistributionScorer(real, feature, config, feature_name=name, real_labels=real_labels)


def fid_kid(
    images: torch.Tensor,
    real: torch.Tensor,
    classifier: nn.Module,
    config: DistributionConfig | None = None,
) -> dict[str, float]:
    """FID, KID and KID's spread over subsets, of ``images`` against ``real``, on the
    classifier's features. For many calls against the same real images, build a
    :class:`DistributionScorer` once instead."""
    return classifier_scorer(classifier, real, config).score(images)
