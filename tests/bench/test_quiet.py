"""Known library noise is silenced precisely: the named messages go, everything else stays."""

from __future__ import annotations

import logging
import warnings

from bench.measure import quiet


def test_known_log_lines_are_dropped_and_others_kept(caplog):
    quiet.silence_known_noise()
    logger = logging.getLogger("torchao")
    with caplog.at_level(logging.INFO, logger="torchao"):
        logger.warning("Failed to load /x/_C_cutlass.so: libcuda.so.1 not found")
        logger.warning("a real torchao problem")
    assert [r.getMessage() for r in caplog.records] == ["a real torchao problem"]


def test_known_warnings_are_dropped_and_others_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_known_noise()
        warnings.warn("Int8Tensor does not implement _stable_hash_for_caching. For PT2", UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_transformers_torchvision_fallback_is_dropped(caplog):
    quiet.silence_known_noise()
    logger = logging.getLogger("transformers.utils.import_utils")
    with caplog.at_level(logging.WARNING, logger="transformers.utils.import_utils"):
        logger.warning("`CLIPImageProcessor` requires torchvision (not installed); falling back to x")
    assert caplog.records == []
