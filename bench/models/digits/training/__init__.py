"""Training scripts for the embedded reference models and the digit classifier.

Run them as modules, e.g. ``python -m bench.training.train_classifier`` and
``python -m bench.training.train_digits_unet``; each saves into ``bench/models/weights/``.
"""
