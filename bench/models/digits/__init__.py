"""The digits domain in one place: the handwritten digits (:mod:`~bench.models.digits.data`),
the digit classifier that scores them, the embedded models trained on them (``digits-unet``,
``digits-dit``, ``digits-ar``, ``digits-ar-large``) and their training scripts
(:mod:`bench.models.digits.training`).

The shipped weights stay package data of :mod:`bench.models` (``bench/models/weights/``).
"""

from __future__ import annotations

from pathlib import Path

#: Where the embedded models' shipped weights live (one folder per model).
WEIGHTS_ROOT = Path(__file__).parents[1] / "weights"


def training_command(script: str) -> str:
    """The command that runs training script ``script`` (a module of the training package)."""
    return f"python -m bench.models.digits.training.{script}"


__all__ = ["WEIGHTS_ROOT", "training_command"]
