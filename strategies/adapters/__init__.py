"""Model-kind adapters: the architecture-specific half of the training and pruning strategies.

See :mod:`strategies.adapters.base` for the interface and :func:`get_adapter` for dispatch on
``model.kind``. Adapters import their heavy dependencies lazily.
"""

from strategies.adapters.base import (
    ADAPTERS,
    ModelAdapter,
    PruneSetup,
    Student,
    TrainBatch,
    adapter_reason,
    get_adapter,
)

__all__ = [
    "ADAPTERS",
    "ModelAdapter",
    "PruneSetup",
    "Student",
    "TrainBatch",
    "adapter_reason",
    "get_adapter",
]
