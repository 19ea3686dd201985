"""The embedded digits-unet model and the digit classifier: loading, generation contracts, quality."""

from __future__ import annotations

import pytest
import torch

from bench.models.digits import unet as du

FAST = {"num_inference_steps": 4}


@pytest.fixture(scope="module")
def model():
    import os

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # loading must never need the network
    try:
        yield du.load("cpu")
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def test_loads_offline_with_the_protocol(model):
    from diffusers import DiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    assert model.name == "digits-unet" and model.kind == "diffusion-unet"
    assert isinstance(model.pipe, DiffusionPipeline)
    assert set(model.pipe.components) == {"unet", "text_encoder", "tokenizer", "scheduler"}
    comps = model.components()
    assert set(comps) == {"denoiser", "text_encoder"}
    assert isinstance(comps["denoiser"], UNet2DConditionModel)
    assert isinstance(comps["text_encoder"], CLIPTextModel)
    assert model.pipe.unet.dtype == torch.float32
    assert model.steps == model.call_args["num_inference_steps"]
    assert 1_000_000 < model.parameter_count() < 3_000_000


def test_missing_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench.models.digits.training.train_digits_unet"):
        du.load(directory=tmp_path)


def test_generate_shape_range_and_determinism(model):
    prompts, labels = model.prompts(3)
    assert prompts == ["a handwritten 0", "a handwritten 1", "a handwritten 2"]
    assert labels == [0, 1, 2]
    a = model.generate(prompts, [0, 1, 2], **FAST)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    b = model.generate(prompts, [0, 1, 2], **FAST)
    assert torch.equal(a, b)


def test_image_does_not_depend_on_batch_composition(model):
    alone = model.generate(["a handwritten 3"], [7], **FAST)
    batch = model.generate(
        ["a handwritten 8", "a handwritten 5", "a handwritten 3"], [1, 2, 7], **FAST
    )
    torch.testing.assert_close(batch[2:], alone, atol=1e-5, rtol=0)
    other_seed = model.generate(["a handwritten 3"], [8], **FAST)
    assert not torch.allclose(other_seed, alone)


def test_step_callback_called_once_per_step(model):
    calls: list[int] = []
    model.generate(["a handwritten 1"], [0], step_callback=calls.append, num_inference_steps=6)
    assert calls == list(range(6))


def test_scheduler_can_be_swapped(model):
    from diffusers import DPMSolverMultistepScheduler

    m = model.clone()
    m.pipe.scheduler = DPMSolverMultistepScheduler.from_config(m.pipe.scheduler.config)
    calls: list[int] = []
    out = m.generate(
        ["a handwritten 4", "a handwritten 9"],
        [0, 1],
        step_callback=calls.append,
        num_inference_steps=5,
    )
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert calls == list(range(5))
    assert type(model.pipe.scheduler).__name__ == "DDIMScheduler"  # the original is untouched


def test_set_component(model):
    m = model.clone()
    new_unet = m.pipe.unet.to(torch.bfloat16)
    m.set_component("denoiser", new_unet)
    assert m.denoiser is new_unet
    out = m.generate(["a handwritten 2"], [0], num_inference_steps=2)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 16, 16)
    with pytest.raises(KeyError, match="decoder"):
        m.set_component("decoder", new_unet)


def test_data_access(model):
    real = model.real_images("heldout")
    assert real.shape == (297, 1, 16, 16) and float(real.min()) >= 0 and float(real.max()) <= 1
    batches = model.train_batches(batch_size=48, seed=3)
    images, prompts = next(batches)
    assert images.shape == (48, 1, 16, 16) and len(prompts) == 48
    assert all(p.startswith("a handwritten ") for p in prompts)
    for _ in range(25):  # more than one epoch of the 1000 generator images
        images, prompts = next(batches)
    assert images.shape[0] == 48
    again, prompts_again = next(model.train_batches(batch_size=48, seed=3))
    first, prompts_first = next(model.train_batches(batch_size=48, seed=3))
    assert torch.equal(again, first) and prompts_again == prompts_first


def test_classifier_is_accurate_on_heldout_real_digits(model):
    from bench.models.digits.data import load_split

    clf = model.classifier()
    held = load_split("heldout")
    x = torch.from_numpy(held.images.copy())
    pred = clf.predict(x)
    acc = float((pred == torch.from_numpy(held.labels.copy())).float().mean())
    assert acc >= 0.95
    with torch.no_grad():
        feats = clf.features(x[:5])
    assert feats.shape == (5, 64)


@pytest.mark.slow
def test_adherence_at_default_settings(model):
    n = 100
    prompts, labels = model.prompts(n)
    images = model.generate(prompts, list(range(n)))
    pred = model.classifier().predict(images)
    adherence = float((pred == torch.tensor(labels)).float().mean())
    assert adherence >= 0.80, adherence
