"""The baseline-image cache key: the images are reused only by the code that made them."""

from __future__ import annotations

import sys

import pytest
import torch

from bench.measure import baseline_cache


class _Model:
    """What :func:`baseline_cache.key` reads of a model."""

    device = torch.device("cpu")
    dtype = torch.float32

    def fingerprint(self) -> str:
        return "weights"


VERSIONS = {"accelbench": "0.1.0", "torch": "2.4.0", "diffusers": "0.35.0",
            "transformers": "4.50.0"}


def _key(monkeypatch, versions=None, sources="abc") -> str:
    table = {**VERSIONS, **(versions or {})}
    monkeypatch.setattr(baseline_cache, "_version", lambda name: table.get(name))
    monkeypatch.setattr(baseline_cache, "source_hash", lambda: sources)
    return baseline_cache.key(_Model(), ["a prompt"], [0])


def test_the_same_code_and_inputs_give_the_same_key(monkeypatch):
    assert _key(monkeypatch) == _key(monkeypatch)


@pytest.mark.parametrize("package", ["accelbench", "torch", "diffusers", "transformers"])
def test_the_key_changes_with_each_version(monkeypatch, package):
    assert _key(monkeypatch, {package: "9.9.9"}) != _key(monkeypatch)


def test_the_key_changes_with_the_sources(monkeypatch):
    assert _key(monkeypatch, sources="def") != _key(monkeypatch)


def test_the_source_hash_follows_every_edit(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_pipeline_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    module = pkg / "sub" / "step.py"
    module.write_text("SCALE = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(baseline_cache, "SOURCE_PACKAGES", ("fake_pipeline_pkg",))
    try:
        before = baseline_cache.source_hash.__wrapped__()
        assert baseline_cache.source_hash.__wrapped__() == before
        module.write_text("SCALE = 2.0\n")  # an uncommitted edit counts as much as a commit
        assert baseline_cache.source_hash.__wrapped__() != before
    finally:
        sys.modules.pop("fake_pipeline_pkg", None)


def test_the_real_identity_names_the_code():
    identity = baseline_cache.code_identity()
    assert identity["torch"] == torch.__version__
    assert set(identity) == {"accelbench", "sources", "torch", "diffusers", "transformers"}
    assert len(identity["sources"]) == 16
