"""The model zoo: reference models behind one protocol, looked up by name.

The protocols by role (:mod:`bench.models.base`): :class:`ReferenceModel` (every model
generates), :class:`DataDomain` (models with real images and training data) and
:class:`TokenModel` / :class:`TokenData` (autoregressive image-token models).
"""

from bench.models.base import (
    DataDomain,
    ModelSpec,
    ReferenceModel,
    TokenData,
    TokenModel,
    decoding_reason,
    has_data,
    has_token_data,
    has_tokens,
    no_data_reason,
)
from bench.models.registry import MODELS, get_model_info, list_models, load_model

__all__ = [
    "MODELS",
    "DataDomain",
    "ModelSpec",
    "ReferenceModel",
    "TokenData",
    "TokenModel",
    "decoding_reason",
    "get_model_info",
    "has_data",
    "has_token_data",
    "has_tokens",
    "list_models",
    "load_model",
    "no_data_reason",
]
