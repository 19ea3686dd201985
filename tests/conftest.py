"""Shared fixtures: an isolated cache, and the embedded model loaded once per session."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's cache (baseline images, trained weights) out of the user's home."""
    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def digits_unet():
    """The embedded digits-unet model (do not change it: clone() first)."""
    from bench.models import load_model

    return load_model("digits-unet")
