"""Training scripts for the embedded reference models and the digit classifier.

Run them as modules, e.g. ``python -m bench.models.digits.training.train_classifier`` and
``python -m bench.models.digits.training.train_digits_unet``; each saves into
``bench/models/weights/``. They share one set of options, learning-rate schedule, EMA and
training loop (:mod:`~bench.models.digits.training.common`); the two diffusion models share
their whole recipe (:mod:`~bench.models.digits.training.diffusion`).
"""
