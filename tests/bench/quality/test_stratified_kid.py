"""Class-stratified KID: exact against torchmetrics for one class, and 0 in expectation for
class-balanced samples of one distribution, where torchmetrics' i.i.d. estimate is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import poly_mmd

from bench.models.digits.data import balanced_labels, load_split
from bench.quality import noise_floor
from bench.quality.distribution import ClassifierFeatures, classifier_scorer
from bench.quality.stratified_kid import stratified_kid, stratified_mmd2


@pytest.fixture(scope="module")
def digits():
    from bench.models.digits.classifier import load_classifier

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    classifier = load_classifier()
    feature = ClassifierFeatures(classifier)
    splits = {}
    for name in ("generator", "heldout"):
        split = load_split(name)
        images = torch.from_numpy(split.images.copy())
        splits[name] = (images, feature(images), torch.from_numpy(split.labels.copy()).long())
    yield classifier, splits
    torch.set_num_threads(before)


def _balanced_draw(labels: torch.Tensor, per_class: int, generator: torch.Generator,
                   exclude: torch.Tensor | None = None) -> torch.Tensor:
    """``per_class`` images of every class, without replacement (and outside ``exclude``)."""
    out = []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        if exclude is not None:
            idx = idx[~torch.isin(idx, exclude)]
        out.append(idx[torch.randperm(len(idx), generator=generator)[:per_class]])
    return torch.cat(out)


def test_one_class_is_the_plain_unbiased_estimate():
    """With a single class the stratified estimate is torchmetrics' unbiased MMD^2."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 8, generator=g, dtype=torch.float64), torch.randn(40, 8, generator=g, dtype=torch.float64) + 0.3
    ones = torch.zeros(40, dtype=torch.long)
    assert stratified_mmd2(x, ones, y, ones) == pytest.approx(float(poly_mmd(y, x)), rel=1e-10)


def test_classes_are_weighted_by_the_generated_composition():
    """Two classes, one generated class moved: the estimate is the weighted mixture MMD^2, and a
    class the generated images do not ask for carries no weight."""
    g = torch.Generator().manual_seed(1)
    real = torch.randn(90, 4, generator=g, dtype=torch.float64)
    real_labels = torch.tensor([0] * 30 + [1] * 30 + [2] * 30)
    fake = torch.randn(60, 4, generator=g, dtype=torch.float64)
    fake_labels = torch.tensor([0] * 30 + [1] * 30)
    mixed = stratified_mmd2(fake, fake_labels, real, real_labels)
    only_two = stratified_mmd2(fake, fake_labels, real[:60], real_labels[:60])
    assert mixed == pytest.approx(only_two, rel=1e-12)


def test_too_few_images_of_a_class_is_an_error():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="class 1 has 1 generated"):
        stratified_mmd2(x, torch.tensor([0, 0, 0, 0, 1]), x, torch.tensor([0, 0, 1, 1, 1]))


def test_balanced_samples_of_one_distribution_score_zero_within_noise(digits):
    """Disjoint class-balanced samples of the real digits (20 and 30 per class, as the prompts
    and the held-out split have them): the stratified KID averages 0 within its standard
    error, and its jackknife error matches the spread of the draws. torchmetrics' i.i.d.
    estimate on the same draws sits many standard errors below 0 (the bias the old records
    showed as -0.40)."""
    _, splits = digits
    _, feats, labels = splits["generator"]
    g = torch.Generator().manual_seed(0)
    kids, ses, plain = [], [], []
    for seed in range(24):
        a = _balanced_draw(labels, 20, g)
        b = _balanced_draw(labels, 30, g, exclude=a)
        kid, se = stratified_kid(feats[a], labels[a], feats[b], labels[b], seed=seed)
        kids.append(kid)
        ses.append(se)
        sub = b[torch.randperm(len(b), generator=g)[:200]]
        plain.append(float(poly_mmd(feats[sub], feats[a])))
    kids_np = np.array(kids)
    spread = kids_np.std(ddof=1)
    assert abs(kids_np.mean()) < 3 * spread / np.sqrt(len(kids)), kids
    assert 0.5 * spread < np.mean(ses) < 2.5 * spread, (np.mean(ses), spread)
    plain_np = np.array(plain)
    assert plain_np.mean() + 3 * plain_np.std(ddof=1) / np.sqrt(len(plain)) < 0, plain


def test_scorer_and_noise_floor_centre_on_zero(digits):
    """The run's scorer (real labels from the held-out split, the prompts' labels for the
    images): real digits drawn as the prompts ask score KID within noise of 0, and the noise
    floor's band is centred there too."""
    from bench.models.base import ModelSpec
    from bench.models.registry import load_model

    classifier, splits = digits
    heldout, _, held_labels = splits["heldout"]
    pool, _, pool_labels = splits["generator"]
    scorer = classifier_scorer(classifier, heldout, real_labels=held_labels)
    want = balanced_labels(200)
    g = torch.Generator().manual_seed(3)
    kids, ses = [], []
    for _ in range(6):
        idx = _balanced_draw(pool_labels, 20, g)
        order = torch.argsort(pool_labels[idx], stable=True)
        idx = idx[order]
        labels = pool_labels[idx].tolist()
        assert sorted(labels) == sorted(want)
        q = scorer.score(pool[idx], labels)
        kids.append(q["kid"])
        ses.append(q["kid_std"])
    assert abs(np.mean(kids)) < 3 * np.mean(ses), (kids, ses)
    assert scorer.describe(200, want)["kid_method"].startswith("class-stratified")
    model = load_model(ModelSpec("digits-unet"))
    assert torch.equal(noise_floor.real_labels(model, heldout), held_labels)
    floor = noise_floor.for_model(model, scorer, 200, seeds=3, use_cache=False)
    assert abs(floor["kid"]["mean"]) < 3 * floor["kid_std"]["mean"], floor["kid"]
