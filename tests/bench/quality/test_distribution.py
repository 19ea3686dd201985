"""FID/KID on the digit classifier's features, their noise floor, and the hub metrics' guards.

Sanity properties are checked on real digits (no generator needed): FID between real splits
is far below FID against noise; FID rises with injected Gaussian noise; KID is near zero for
two samples of one distribution. FID and KID are also compared with independent NumPy/SciPy
implementations on the same features.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from bench.core.metrics import METRICS
from bench.models.digits.data import load_split
from bench.quality import noise_floor
from bench.quality.distribution import (
    ClassifierFeatures,
    DistributionConfig,
    DistributionScorer,
    classifier_scorer,
    fid_kid,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these small convolutions only lose from more on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def classifier():
    from bench.models.digits.classifier import load_classifier

    return load_classifier()


@pytest.fixture(scope="module")
def heldout():
    return torch.from_numpy(load_split("heldout").images.copy())


@pytest.fixture(scope="module")
def pool():
    return torch.from_numpy(load_split("generator").images.copy())


@pytest.fixture(scope="module")
def scorer(classifier, heldout):
    return classifier_scorer(classifier, heldout)


def _draw(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


# -- reference implementations ----------------------------------------------------------------
def _np_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID as in pytorch-fid / the TTUR code: scipy's matrix square root."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _np_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD with k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018)."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m = len(x)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_fid_matches_scipy_reference(classifier, heldout, pool, scorer):
    sample = _draw(pool, 150, 0)
    features = ClassifierFeatures(classifier)
    expected = _np_fid(features(sample).numpy(), features(heldout).numpy())
    assert scorer.score(sample)["fid"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    noise = torch.rand(150, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    expected_noise = _np_fid(features(noise).numpy(), features(heldout).numpy())
    assert scorer.score(noise)["fid"] == pytest.approx(expected_noise, rel=1e-6)


def test_kid_matches_numpy_reference(classifier, heldout, pool):
    """With one subset the size of both samples, KID is exactly the unbiased MMD^2."""
    real, fake = heldout[:120], _draw(pool, 120, 3)
    features = ClassifierFeatures(classifier)
    expected = _np_mmd2_unbiased(features(fake).numpy(), features(real).numpy())
    s = DistributionScorer(real, features, DistributionConfig(kid_subset_size=120, kid_subsets=1))
    result = s.score(fake)
    assert result["kid"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert result["kid_std"] == 0.0


# -- sanity properties ------------------------------------------------------------------------
def test_real_vs_heldout_far_below_real_vs_noise(scorer, pool):
    real = scorer.score(_draw(pool, 100, 0))
    noise = scorer.score(torch.rand(100, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert real["fid"] * 10 < noise["fid"]
    assert abs(real["kid"]) * 20 < noise["kid"]


def test_fid_rises_monotonically_with_gaussian_noise(scorer, pool):
    x = _draw(pool, 200, 0)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    fids = [scorer.score((x + s * eps).clamp(0, 1))["fid"] for s in (0.0, 0.1, 0.2, 0.3, 0.5)]
    assert all(a < b for a, b in zip(fids, fids[1:], strict=False)), fids


def test_kid_near_zero_for_same_distribution(scorer, pool):
    """Unbiased KID has expectation 0 for one distribution: over several draws its mean sits
    within the draws' standard error of 0, and far below KID against noise."""
    kids = [scorer.score(_draw(pool, 150, s))["kid"] for s in range(6)]
    noise = scorer.score(torch.rand(150, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    mean, se = np.mean(kids), np.std(kids, ddof=1) / np.sqrt(len(kids))
    assert abs(mean) < 3 * se + 0.01 * noise["kid"], kids
    assert max(abs(k) for k in kids) < 0.05 * noise["kid"]


# -- behaviour ------------------------------------------------------------------------------
def test_features_accept_uint8_and_float(classifier, heldout):
    features = ClassifierFeatures(classifier)
    assert features.num_features == classifier.feature_dim
    x = heldout[:16]
    u8 = (x * 255).round().to(torch.uint8)
    f_float, f_u8 = features(x), features(u8)
    assert f_float.shape == (16, classifier.feature_dim) and f_float.dtype == torch.float64
    assert torch.allclose(f_float, f_u8, atol=0.05)
    with pytest.raises(ValueError, match="NCHW"):
        features(x[0])
    with pytest.raises(TypeError, match="uint8"):
        features(x.to(torch.int32))


def test_scoring_leaves_the_shared_classifier_alone(classifier, scorer, pool):
    scorer._fid.train()  # torchmetrics may switch modes; the classifier must stay in eval
    scorer.score(_draw(pool, 20, 0))
    assert not classifier.training
    assert next(classifier.parameters()).dtype == torch.float32


def test_deterministic_and_independent_of_global_rng(scorer, pool):
    x = _draw(pool, 60, 5)
    torch.manual_seed(123)
    a = scorer.score(x)
    torch.manual_seed(456)
    b = scorer.score(x)
    assert a == b


def test_kid_subset_size_rules(classifier, heldout, pool):
    cfg = DistributionConfig()
    assert cfg.subset_size(100, 297) == 100
    assert cfg.subset_size(40, 297) == 40
    assert DistributionConfig(kid_subset_size=50).subset_size(100, 297) == 50
    with pytest.raises(ValueError, match="larger than the smaller sample"):
        DistributionConfig(kid_subset_size=200).subset_size(100, 297)
    with pytest.raises(ValueError, match=">= 2"):
        DistributionConfig(kid_subset_size=1)
    s = DistributionScorer(heldout[:30], ClassifierFeatures(classifier))
    assert s.describe(80)["kid_subset_size"] == 30
    assert set(s.score(_draw(pool, 80, 0))) == {"fid", "kid", "kid_std"}
    with pytest.raises(ValueError, match="at least 2"):
        s.score(pool[:1])


def test_fid_kid_function_and_declared_directions(classifier, heldout, pool, scorer):
    x = _draw(pool, 50, 2)
    values = fid_kid(x, heldout, classifier)
    assert values == scorer.score(x)
    for name in ("fid", "kid", "kid_std"):
        assert METRICS[name].higher_is_better is False
        assert isinstance(METRICS[name].unit, str)


# -- noise floor ------------------------------------------------------------------------------
def test_noise_floor_measures_spread_at_the_sample_size(scorer, pool, classifier):
    labels = torch.from_numpy(load_split("generator").labels.copy())
    small = noise_floor.measure(scorer, pool, 50, seeds=4, classifier=classifier, pool_labels=labels)
    large = noise_floor.measure(scorer, pool, 250, seeds=4)
    for floor in (small, large):
        assert set(floor) >= {"fid", "kid", "kid_std", "n", "seeds", "scorer"}
        assert len(floor["fid"]["values"]) == 4 and floor["fid"]["std"] > 0
    # FID is biased upwards at small n: the floor must be measured at the measured n.
    assert small["fid"]["mean"] > large["fid"]["mean"]
    assert small["adherence"]["mean"] > 0.9  # the classifier reads real digits
    assert "adherence" not in large
    with pytest.raises(ValueError, match="cannot draw"):
        noise_floor.measure(scorer, pool[:10], 20, seeds=2)
    with pytest.raises(ValueError, match="2 seeds"):
        noise_floor.measure(scorer, pool, 20, seeds=1)


def test_noise_floor_for_model_is_cached(monkeypatch, tmp_path, scorer):
    from bench.models.digits.unet import DigitsUNet

    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path))
    # The floor needs the model's real images and classifier only, not its generator.
    model = DigitsUNet(name="digits-unet", kind="diffusion-unet", device=torch.device("cpu"))
    first = noise_floor.for_model(model, scorer, 40, seeds=3)
    files = list((tmp_path / "noise_floor").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["fid"]["values"] == first["fid"]["values"]
    files[0].write_text(json.dumps({**first, "marker": True}))
    assert noise_floor.for_model(model, scorer, 40, seeds=3).get("marker") is True
    assert "marker" not in noise_floor.for_model(model, scorer, 40, seeds=3, use_cache=False)
    assert first["adherence"]["mean"] > 0.9
    assert first["pool"].startswith("generator") and first["reference"].startswith("heldout")
    assert first["stratified"] is True


def test_stratified_draws_match_the_prompts_classes(scorer, pool):
    """Each draw has exactly the digits the benchmark's prompts ask for, and draws differ."""
    from bench.models.digits.data import balanced_labels

    pool_labels = torch.from_numpy(load_split("generator").labels.copy())
    wanted = balanced_labels(37)
    draws = noise_floor._draws(len(pool), 37, 3, pool_labels, wanted)
    for idx in draws:
        assert pool_labels[idx].tolist() == wanted
        assert len(set(idx.tolist())) == 37
    assert not torch.equal(draws[0], draws[1])
    with pytest.raises(ValueError, match="class 0"):
        noise_floor._draws(len(pool), 500, 2, pool_labels, [0] * 500)
    # Stratifying removes the chance class mix: a lower and tighter floor.
    strat = noise_floor.measure(scorer, pool, 60, 4, pool_labels=pool_labels, labels=balanced_labels(60))
    plain = noise_floor.measure(scorer, pool, 60, 4)
    assert strat["stratified"] and not plain["stratified"]
    assert strat["fid"]["mean"] < plain["fid"]["mean"]


def test_noise_floor_from_halves_of_one_real_set(classifier, heldout):
    floor = noise_floor.measure_halves(heldout, ClassifierFeatures(classifier), 100, seeds=3)
    assert floor["n"] == 100 and len(floor["fid"]["values"]) == 3
    assert floor["fid"]["mean"] < 20


# -- the engine's quality step ------------------------------------------------------------------
def test_engine_quality_adds_fid_kid_and_noise_floor(monkeypatch, tmp_path, heldout, pool):
    from bench.core import results
    from bench.core.quality_config import QualityConfig
    from bench.measure.measures import score_quality
    from bench.models.digits.unet import DigitsUNet
    from bench.quality.suite import QualitySuite

    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path))
    model = DigitsUNet(name="digits-unet", kind="diffusion-unet", device=torch.device("cpu"))
    suite = QualitySuite(model, QualityConfig(noise_floor_seeds=3))
    images, reference = _draw(pool, 40, 0), _draw(pool, 40, 1)
    prompts, labels = model.prompts(40)
    fields = score_quality(model, images, reference, labels, suite, prompts)
    fields["quality_noise_floor"] = suite.noise_floor(40)
    q = fields["quality"]
    assert {"psnr", "ssim", "adherence", "fid", "kid", "kid_std"} <= set(q)
    assert fields["quality_meta"]["fid"]["higher_is_better"] is False
    assert fields["quality_details"]["distribution"]["n_generated"] == 40
    assert fields["quality_details"]["distribution"]["n_real"] == len(heldout)
    assert fields["quality_details"]["unavailable"] == {}
    floor = fields["quality_noise_floor"]
    assert floor["n"] == 40 and floor["seeds"] == 3
    row = results.flatten({"strategy": "baseline", **fields})
    assert row["fid"] == pytest.approx(q["fid"]) and row["kid_std"] == pytest.approx(q["kid_std"])


# -- hub metrics: weights only from local caches, clear errors otherwise -------------------------
@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty weight caches, and any attempt to open a network connection fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return tmp_path


def test_missing_inception_weights_say_what_to_do(offline, monkeypatch):
    from bench.quality import hub

    monkeypatch.setattr(hub, "_has_module", lambda name: True)
    with pytest.raises(hub.HubMetricUnavailable) as err:
        hub.inception_weights()
    msg = str(err.value)
    assert hub.INCEPTION_WEIGHTS in msg and str(offline / "torch") in msg and "curl" in msg


def test_missing_packages_are_named(monkeypatch):
    from bench.quality import hub

    monkeypatch.setattr(hub, "_has_module", lambda name: name == "transformers")
    with pytest.raises(hub.HubMetricUnavailable, match="torch_fidelity, torchvision.*pip install"):
        hub.inception_weights()
    with pytest.raises(hub.HubMetricUnavailable, match="torchvision"):
        hub.lpips_backbone_weights("alex")
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        hub.lpips_backbone_weights("resnet")


def test_missing_lpips_backbone_says_what_to_do(offline, monkeypatch):
    from bench.quality import hub

    monkeypatch.setattr(hub, "_has_module", lambda name: True)
    with pytest.raises(hub.HubMetricUnavailable) as err:
        hub.lpips_backbone_weights("vgg")
    assert "vgg16" in str(err.value) and str(offline / "torch") in str(err.value)


def test_missing_clip_backbone_says_what_to_do(offline):
    from bench.quality import hub

    with pytest.raises(hub.HubMetricUnavailable) as err:
        hub.locate_clip("openai/clip-vit-base-patch16")
    msg = str(err.value)
    assert "openai/clip-vit-base-patch16" in msg and "hf download" in msg


def _tiny_clip(folder):
    """A real (random-weight) CLIP model and processor saved like a hub snapshot."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789,.":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_score_from_a_local_backbone(offline):
    """The whole CLIPScore path on a tiny local model, checked against a direct computation."""
    from transformers import CLIPModel, CLIPProcessor

    from bench.quality import hub

    folder = _tiny_clip(offline / "tiny-clip")
    images = torch.rand(5, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    prompts = ["a handwritten 1", "a cat", "a red bicycle", "sunflower", "a lighthouse"]
    score = hub.clip_score(images, prompts, backbone=str(folder), batch_size=2)

    model = CLIPModel.from_pretrained(folder).eval()
    proc = CLIPProcessor.from_pretrained(folder)
    u8 = (images * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    with torch.no_grad():
        px = proc(images=list(u8), return_tensors="pt")["pixel_values"]
        tx = proc(text=prompts, return_tensors="pt", padding=True)
        img = hub._TensorFeaturesCLIP._tensor(model.get_image_features(pixel_values=px))
        txt = hub._TensorFeaturesCLIP._tensor(
            model.get_text_features(input_ids=tx["input_ids"], attention_mask=tx["attention_mask"])
        )
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    expected = float((100 * cos).mean().clamp(min=0))
    assert score == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="prompts"):
        hub.clip_score(images, prompts[:2], backbone=str(folder))


def test_incomplete_clip_folder_lists_missing_files(offline):
    from bench.quality import hub

    folder = _tiny_clip(offline / "broken-clip")
    (folder / "model.safetensors").unlink()
    with pytest.raises(hub.HubMetricUnavailable, match="model.safetensors or pytorch_model.bin"):
        hub.locate_clip(str(folder))


def test_hub_quality_records_why_metrics_are_missing(offline, monkeypatch, heldout):
    from bench.core.quality_config import QualityConfig
    from bench.quality.suite import QualitySuite

    class NoRealImages:
        name = "hf:someone/some-pipeline"

        def real_images(self, split="heldout"):
            raise ValueError(f"{self.name} comes with no real images")

        def classifier(self):
            return None

    suite = QualitySuite(
        NoRealImages(), QualityConfig(clip_backbone="openai/clip-vit-base-patch16"), hub=True
    )
    images = heldout[:4].expand(-1, 3, -1, -1)
    values, details = suite.score(images, images, ["a"] * 4)
    assert values == {}
    assert set(details["unavailable"]) == {"fid", "kid", "kid_std", "clip_score", "lpips"}
    assert "clip-vit-base-patch16" in details["unavailable"]["clip_score"]
    assert details["hub"]["clip_backbone"] == "openai/clip-vit-base-patch16"
    assert suite.noise_floor(4) is None


def test_lpips_with_local_backbone(offline):
    """LPIPS' real code path with a backbone file placed in the torch hub cache."""
    tvm = pytest.importorskip("torchvision.models", reason="LPIPS needs torchvision")
    from bench.quality import hub

    path = hub.torch_checkpoints_dir() / tvm.AlexNet_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tvm.alexnet(weights=None).state_dict(), path)  # random but real weights
    a = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert hub.lpips(a, a) == pytest.approx(0.0, abs=1e-6)
    assert hub.lpips(a, torch.rand(2, 3, 64, 64)) > 0


@pytest.mark.slow
def test_inception_fid_with_local_weights(offline, monkeypatch):
    """Inception FID's real code path with a (random) weight file in the torch hub cache."""
    pytest.importorskip("torchvision", reason="Inception FID needs torchvision")
    pytest.importorskip("torch_fidelity", reason="Inception FID needs torch-fidelity")
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    from bench.quality import hub

    path = hub.torch_checkpoints_dir() / hub.INCEPTION_WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with monkeypatch.context() as m:  # build the network once without any weights
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(8, 3, 64, 64, generator=g)
    scorer = hub.inception_scorer(real)
    same = scorer.score(real)
    other = scorer.score(torch.rand(8, 1, 48, 48, generator=g))
    assert abs(same["fid"]) < 1e-3 and other["fid"] > same["fid"]
