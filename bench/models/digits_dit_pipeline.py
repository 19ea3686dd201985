"""Where the shipped ``digits-dit`` weights say their transformer class lives.

``weights/digits-dit/model_index.json`` names ``bench.models.digits_dit_pipeline`` as the module
of ``DigitsDiTTransformer``, and diffusers imports that module to load it (and looks up the
class's loadable base, ``ModelMixin``, there). The code lives in
:mod:`bench.models.digits.dit_pipeline`; this module keeps the shipped weights loadable.
"""

from diffusers import ModelMixin

from bench.models.digits.dit_pipeline import DigitsDiTPipeline, DigitsDiTTransformer

__all__ = ["DigitsDiTPipeline", "DigitsDiTTransformer", "ModelMixin"]
