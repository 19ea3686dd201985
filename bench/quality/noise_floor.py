"""Each distribution metric's own noise floor: what FID and KID read between two samples of
*real* images, and how much that moves from one draw to the next.

A generator that produced real digits would still score FID > 0 against the held-out
reference, because both are finite samples; and two draws of the same generator differ.
The noise floor measures both at exactly the sample sizes of the measurement: ``n`` images
drawn (without replacement, one draw per seed) from a real split *disjoint* from the
reference, scored against the same reference with the same scorer. On the embedded models
the pool is the ``generator`` split (real digits the classifier never saw), the reference
the ``heldout`` split, and every draw has the digit composition of the benchmark's prompts
(which ask for every digit equally often), so that a perfect generator would score the
floor's mean. Differences between strategies smaller than about two standard deviations of
the floor mean nothing.

The classifier's accuracy on the same real draws is reported alongside: the adherence a
perfect generator would reach at this ``n``, and its sampling spread.

Results are cached on disk (``<cache>/noise_floor/``) keyed by the feature extractor's
weights, the real images, ``n``, the seeds and the scorer's settings, so they are computed
once per model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.core.cache import cache_dir
from bench.models.digits.data import load_split
from bench.quality.adherence import classify
from bench.quality.distribution import DistributionConfig, DistributionScorer
from bench.quality.video import frames_as_channels

#: Draws per noise floor: enough for a usable standard deviation, cheap on the embedded models.
DEFAULT_SEEDS = 10
_VERSION = 3


def _summary(values: Sequence[float]) -> dict[str, Any] | None:
    """Mean, spread and range of the finite ``values`` (a metric a draw could not compute,
    such as KID's standard deviation from a single subset, is NaN and left out, and counted);
    None when none is finite."""
    vals = [float(v) for v in values if math.isfinite(float(v))]
    if not vals:
        return None
    out: dict[str, Any] = {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "values": vals,
    }
    if len(vals) < len(values):
        out["non_finite_draws"] = len(values) - len(vals)
    return out


def _draws(
    pool_size: int,
    n: int,
    seeds: int,
    pool_labels: torch.Tensor | None = None,
    labels: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """``seeds`` draws of ``n`` pool indices without replacement. With ``pool_labels`` and
    ``labels`` (n class labels), every draw has exactly the class composition of ``labels``."""
    if pool_labels is None or labels is None:
        return [
            torch.randperm(pool_size, generator=torch.Generator().manual_seed(1000 + s))[:n]
            for s in range(seeds)
        ]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for a draw of {n} images")
    wanted = torch.as_tensor(list(labels))
    draws = []
    for s in range(seeds):
        g = torch.Generator().manual_seed(1000 + s)
        idx = torch.empty(n, dtype=torch.long)
        for c in wanted.unique().tolist():
            slots = (wanted == c).nonzero().flatten()
            members = (pool_labels == c).nonzero().flatten()
            if len(members) < len(slots):
                raise ValueError(
                    f"cannot draw {len(slots)} real images of class {c} from a pool holding "
                    f"{len(members)}; score fewer images"
                )
            idx[slots] = members[torch.randperm(len(members), generator=g)[: len(slots)]]
        draws.append(idx)
    return draws


def measure(
    scorer: DistributionScorer,
    pool: torch.Tensor,
    n: int,
    seeds: int = DEFAULT_SEEDS,
    classifier: nn.Module | None = None,
    pool_labels: torch.Tensor | None = None,
    pool_name: str = "pool",
    reference_name: str = "reference",
    labels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """FID and KID of ``seeds`` draws of ``n`` real images from ``pool`` against the scorer's
    reference; with ``classifier`` and ``pool_labels``, the classifier's accuracy too.

    ``labels`` (with ``pool_labels``) are the classes of the measured images, i.e. the digits
    their prompts asked for: each draw then has exactly that class composition, as the
    generated images do. This matters: on class-discriminative features the chance class
    mix of an unstratified draw raises FID by itself.

    ``pool`` must be disjoint from the scorer's real images (the caller's responsibility:
    the digits splits are disjoint by construction).

    Returns ``{"fid": {mean, std, min, max, values}, "kid": {...}, "kid_std": {...},
    ["adherence": {...}], "n": n, "seeds": seeds, "pool": ..., "reference": ...}``.
    """
    if n < 2:
        raise ValueError(f"the noise floor needs n >= 2 images, got {n}")
    if seeds < 2:
        raise ValueError(f"the noise floor needs at least 2 seeds to have a spread, got {seeds}")
    if n > len(pool):
        raise ValueError(
            f"cannot draw {n} images from a real pool of {len(pool)}; score fewer images "
            "or provide a larger pool"
        )
    from tqdm.auto import tqdm

    scores: dict[str, list[float]] = {"fid": [], "kid": [], "kid_std": []}
    accuracy: list[float] = []
    draws = _draws(len(pool), n, seeds, pool_labels, labels)
    for idx in tqdm(draws, desc="noise floor", leave=False, disable=None):
        sample = pool[idx]
        draw_labels = pool_labels[idx].tolist() if pool_labels is not None else None
        for name, value in scorer.score(sample, draw_labels).items():
            scores[name].append(value)
        if classifier is not None and pool_labels is not None:
            preds = classify(classifier, sample)
            accuracy.append(float((preds == pool_labels[idx]).float().mean()))
    summaries = {name: _summary(vals) for name, vals in scores.items()}
    out: dict[str, Any] = {name: summary for name, summary in summaries.items() if summary}
    if accuracy and (summary := _summary(accuracy)):
        out["adherence"] = summary
    out.update(
        n=int(n),
        seeds=int(seeds),
        pool=pool_name,
        reference=reference_name,
        stratified=labels is not None and pool_labels is not None,
        scorer=scorer.describe(n, draw_labels if draws else None),
    )
    return out


def _hash_tensor(digest: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    digest.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
    digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def cache_key(
    classifier: nn.Module,
    pool: torch.Tensor,
    reference: torch.Tensor,
    n: int,
    seeds: int,
    config: DistributionConfig,
    labels: Sequence[int] | None = None,
) -> str:
    """A key over everything the noise floor depends on."""
    digest = hashlib.sha256(f"noise-floor/{_VERSION}/{n}/{seeds}".encode())
    digest.update(json.dumps(config.as_dict(), sort_keys=True).encode())
    digest.update(json.dumps(None if labels is None else [int(v) for v in labels]).encode())
    for key, tensor in sorted(classifier.state_dict().items()):
        digest.update(key.encode())
        _hash_tensor(digest, tensor)
    _hash_tensor(digest, pool)
    _hash_tensor(digest, reference)
    return digest.hexdigest()[:24]


def _cache_path(key: str):
    return cache_dir("noise_floor") / f"{key}.json"


def _cache_get(key: str) -> dict[str, Any] | None:
    path = _cache_path(key)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cache_put(key: str, value: dict[str, Any]) -> None:
    folder = _cache_path(key).parent
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(value, fh)
    os.replace(tmp, _cache_path(key))


def for_model(
    model: Any,
    scorer: DistributionScorer,
    n: int,
    seeds: int = DEFAULT_SEEDS,
    use_cache: bool = True,
) -> dict[str, Any]:
    """The noise floor of a reference model with a classifier and a ``generator`` split of
    real images (the embedded models), at ``n`` generated images. Cached on disk.

    ``scorer`` must hold the model's ``heldout`` real images. Where the model's prompts name
    classes (``model.prompts(n)`` returns labels) and the pool's labels are known, each draw
    has the class composition of the benchmark's ``n`` prompts.
    """
    classifier = model.classifier()
    if classifier is None:
        raise ValueError(f"{model.name} has no domain classifier to take features from")
    pool = frames_as_channels(model.real_images("generator"))
    reference = frames_as_channels(model.real_images("heldout"))
    pool_labels = _split_labels(model, "generator")
    n = min(n, len(pool))
    _, prompt_labels = model.prompts(n)
    labels = list(prompt_labels) if prompt_labels and pool_labels is not None else None
    key = cache_key(classifier, pool, reference, n, seeds, scorer.config, labels)
    if use_cache:
        cached = _cache_get(key)
        if cached is not None:
            return cached
    result = measure(
        scorer,
        pool,
        n,
        seeds,
        classifier=classifier,
        pool_labels=pool_labels,
        pool_name="generator split (real)",
        reference_name="heldout split (real)",
        labels=labels,
    )
    if use_cache:
        _cache_put(key, result)
    return result


def real_labels(model: Any, real: torch.Tensor) -> torch.Tensor | None:
    """The classes of ``real`` when they are the model's ``heldout`` split with known labels
    (the embedded models), else None: KID is then class-stratified."""
    labels = _split_labels(model, "heldout")
    if labels is None or len(labels) != len(real):
        return None
    return labels


def _split_labels(model: Any, split: str) -> torch.Tensor | None:
    """Labels of a digits split, where the model's domain is the digits."""
    labels_fn = getattr(model, "real_labels", None)
    if callable(labels_fn):
        return torch.as_tensor(labels_fn(split))

    try:
        labels = torch.from_numpy(load_split(split).labels.copy())  # type: ignore[arg-type]
    except ValueError:
        return None
    # Only where the model's real images are the digits split (same count, same pixels).
    images = model.real_images(split)
    if len(images) != len(labels) or not torch.equal(
        images, torch.from_numpy(load_split(split).images.copy())  # type: ignore[arg-type]
    ):
        return None
    return labels


class _Precomputed(nn.Module):
    """Features computed beforehand, passed to torchmetrics as (N, d, 1, 1) "images"."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).double()


def measure_halves(
    real: torch.Tensor,
    feature: nn.Module,
    n: int,
    seeds: int = DEFAULT_SEEDS,
    config: DistributionConfig | None = None,
) -> dict[str, Any]:
    """The noise floor when there is only one set of real images (a hub model's folder): per
    seed, split ``real`` at random into two disjoint halves and score ``n`` images of one
    half (at most half the set) against the other half.

    The reference is then half as large as in the measurement, so FID's small-sample bias is
    somewhat larger than the measurement's; the record says so (``reference``).
    """
    if seeds < 2:
        raise ValueError(f"the noise floor needs at least 2 seeds to have a spread, got {seeds}")
    if len(real) < 4:
        raise ValueError(f"splitting real images in halves needs at least 4, got {len(real)}")
    from tqdm.auto import tqdm

    features = torch.cat([feature(chunk) for chunk in real.split(64)]).double()
    table = _Precomputed(features.shape[1])
    half = len(features) // 2
    n = min(n, len(features) - half)
    scores: dict[str, list[float]] = {"fid": [], "kid": [], "kid_std": []}
    scorer = None
    for idx in tqdm(_draws(len(features), len(features), seeds), desc="noise floor", leave=False, disable=None):
        ref = features[idx[:half]][:, :, None, None]
        sample = features[idx[half:]][:n][:, :, None, None]
        scorer = DistributionScorer(ref, table, config, feature_name="precomputed")
        for name, value in scorer.score(sample).items():
            scores[name].append(value)
    out: dict[str, Any] = {name: _summary(vals) for name, vals in scores.items()}
    out.update(
        n=int(n),
        seeds=int(seeds),
        pool="random half of the real images",
        reference=f"the other half ({half} images; the measurement uses all {len(real)})",
        scorer=scorer.describe(n) if scorer is not None else None,
    )
    return out
