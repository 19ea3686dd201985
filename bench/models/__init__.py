"""The model zoo: reference models behind one protocol, looked up by name."""

from bench.models.base import ModelSpec, ReferenceModel
from bench.models.registry import MODELS, get_model_info, list_models, load_model

__all__ = ["MODELS", "ModelSpec", "ReferenceModel", "get_model_info", "list_models", "load_model"]
