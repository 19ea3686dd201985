"""A model's fingerprint comes from where its weights come from, read in milliseconds whatever
the model's size; --dtype loads a model in the dtype asked for."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from bench.models import arch, load_model
from bench.models.base import ModelSpec
from strategies import parse_stack
from tests.support.arch import DIFFUSION_FAMILIES


def test_full_size_models_are_fingerprinted_without_reading_a_weight():
    # On the meta device there is no weight to read: hashing weights would fail here.
    prints = {}
    for family in DIFFUSION_FAMILIES:
        model = arch.load(f"arch:{family}", device="meta")
        assert model.source.startswith("arch:") and model.source_intact()
        prints[family] = model.fingerprint()
    assert len(set(prints.values())) == len(prints)
    again = arch.load("arch:sdxl", device="meta")
    assert again.fingerprint() == prints["sdxl"]


def test_the_fingerprint_follows_dtype_seed_strategies_and_in_place_changes():
    base = arch.load("arch:sd15@tiny")
    assert arch.load("arch:sd15@tiny", dtype=torch.bfloat16).fingerprint() != base.fingerprint()
    assert arch.load("arch:sd15@tiny", seed=1).fingerprint() != base.fingerprint()
    twin = base.clone(share_weights=True)
    assert twin.fingerprint() == base.fingerprint()
    assert parse_stack("deepcache").apply(twin).fingerprint() != base.fingerprint()
    changed = base.clone()
    with torch.no_grad():
        changed.denoiser.conv_in.bias.add_(1.0)  # by hand, not by a strategy: the source is stale
    assert not changed.source_intact() and changed.fingerprint() != base.fingerprint()


def test_arch_models_are_built_in_the_dtype_asked_for():
    model = load_model(ModelSpec("arch:flux@tiny", dtype="bf16"))
    dtypes = {t.dtype for m in model.components().values()
              for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()}
    assert model.dtype == torch.bfloat16 and dtypes == {torch.bfloat16}
    images = model.generate(["a cat"], [0], num_inference_steps=2)
    assert torch.isfinite(images).all()
    (bf16,) = parse_stack("bf16")
    assert bf16.supports(model) is None and "already loaded in bf16" in bf16.same_as_baseline(model)


def test_embedded_models_are_identified_by_their_shipped_files():
    model = load_model("digits-unet")
    assert model.source.startswith("files:")
    assert load_model("digits-unet").fingerprint() == model.fingerprint()
    bf16 = load_model(ModelSpec("digits-unet", dtype="bf16"))
    assert bf16.dtype == torch.bfloat16 and bf16.fingerprint() != model.fingerprint()


def test_an_arch_identity_does_not_depend_on_the_order_of_diffusers_default_keys():
    # diffusers lists the config keys left at their defaults in a set's order, which changes
    # from one process to the next; the identity must not.
    from bench.models.provenance import module_config

    class Module:
        def __init__(self, keys):
            self.config = {"sample_size": 8, "_use_default_values": keys}

    one = module_config(Module(["b", "a", "c"]))
    assert one == module_config(Module(["c", "b", "a"]))
    assert one["_use_default_values"] == ["a", "b", "c"] and one["sample_size"] == 8


def test_the_embedded_models_load_from_their_package_weights():
    from bench.models.digits import WEIGHTS_ROOT
    from bench.models.registry import MODELS

    assert WEIGHTS_ROOT.name == "weights" and WEIGHTS_ROOT.parent.name == "models"
    for name in MODELS:
        assert (WEIGHTS_ROOT / name).is_dir(), name
    assert (WEIGHTS_ROOT / "digit-classifier" / "model.safetensors").is_file()


def test_hub_pipelines_load_with_low_memory_in_the_dtype_asked_for(tmp_path, caplog):
    folder = tmp_path / "pipe"
    arch.load("arch:sd15@tiny").pipe.save_pretrained(str(folder))
    with caplog.at_level(logging.WARNING):
        model = load_model(ModelSpec(f"hf:{folder}", dtype="bf16"))
    assert "low_cpu_mem_usage" not in caplog.text and "accelerate" not in caplog.text
    assert model.dtype == torch.bfloat16 and model.source.startswith("files:")
    assert load_model(ModelSpec(f"hf:{folder}", dtype="bf16")).fingerprint() == model.fingerprint()
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = other / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "steps_offset": 0}))
    assert load_model(ModelSpec(f"hf:{other}", dtype="bf16")).fingerprint() != model.fingerprint()


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_a_run_records_the_dtype_it_loaded_and_does_not_time_a_cast_to_it(tmp_path, name):
    from bench.core.config import RunConfig, TimingConfig
    from bench.measure.engine import Engine

    config = RunConfig(model="arch:sd15@tiny", strategies=("bf16", "steps:n=1"), steps=2,
                       batch_size=1, quality_images=1, out_dir=tmp_path, threads=1, dtype=name,
                       count_flops=False, timing=TimingConfig(warmup=1, min_iterations=2,
                                                              min_seconds=0))
    by = {r["strategy"]: r for r in Engine(config, show_progress=False).run().records}
    assert {r["settings"]["load_dtype"] for r in by.values()} == {name}
    assert by["baseline"]["settings"]["dtype"] == ("float32" if name == "fp32" else "bfloat16")
    if name == "bf16":
        assert by["bf16"]["status"] == "same" and "already loaded in bf16" in by["bf16"]["error"]
    else:
        assert by["bf16"]["status"] == "ok"
        assert by["bf16"]["memory"]["weights_mb"] < 0.6 * by["baseline"]["memory"]["weights_mb"]
