"""What the training and pruning strategies need to know about a kind of model.

Quantization and magnitude pruning work on any ``nn.Module``; structural pruning,
distillation and fusion do not: how a smaller student is built from the teacher, which loss
trains the model, where features are compared, which layers may lose channels and which must
keep them all depend on the architecture. Those pieces live behind :class:`ModelAdapter`, one
subclass per :attr:`ReferenceModel.kind <bench.models.base.ReferenceModel.kind>`, so that the
strategy modules stay the same for a UNet, a DiT or an autoregressive image-token model.

:func:`get_adapter` picks the adapter from a lazy ``kind -> "module:Class"`` table;
:func:`adapter_reason` says in words why a model has none.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from bench.core.kinds import ModelKind
from bench.models.base import has_data, no_data_reason
from strategies.core.base import StrategyError

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

#: model.kind -> "module:Class" of its adapter, imported on first use. A missing module means
#: the adapter has not been written yet: strategies then refuse the model with that reason.
ADAPTERS: dict[ModelKind, str] = {
    ModelKind.UNET: "strategies.adapters.unet:UNetAdapter",
    ModelKind.DIT: "strategies.adapters.dit:DiTAdapter",
    ModelKind.AUTOREGRESSIVE: "strategies.adapters.autoregressive:AutoregressiveAdapter",
}


@dataclass
class TrainBatch:
    """One training batch, already turned into the denoiser's inputs.

    Attributes:
        inputs: keyword arguments of the denoiser's forward (sample, timestep, conditioning).
        target: what the task loss compares the denoiser's output with.
        weight: per-example loss weights (e.g. min-SNR), or None for uniform.
        extra: anything else the adapter's loss needs.
    """

    inputs: dict[str, Any]
    target: torch.Tensor
    weight: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PruneSetup:
    """Arguments for torch-pruning's pruner, worked out by the adapter.

    Attributes:
        example_inputs: a real input of the module (traced to build the dependency graph and
            used to count MACs).
        ignored_layers: modules whose output channels must stay (e.g. the output layer).
        num_heads: attention projections -> head count, so head dimensions are pruned
            alike in every head and q/k/v/out stay consistent.
        unwrapped_parameters: bare ``nn.Parameter`` s and the dimension to prune them on.
        notes: what the adapter decided, in words, for the record.
    """

    example_inputs: Any
    ignored_layers: list[nn.Module] = field(default_factory=list)
    num_heads: dict[nn.Module, int] = field(default_factory=dict)
    unwrapped_parameters: dict[nn.Parameter, int] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Student:
    """A student built from a teacher by removing blocks.

    Attributes:
        module: the student, initialised from the teacher's weights where shapes agree.
        feature_pairs: (student module name, teacher module name) whose outputs the feature
            distillation loss compares; both outputs have the same shape.
        initialised: how many of the student's parameters were copied from the teacher.
        removed: what was removed, in words.
    """

    module: nn.Module
    feature_pairs: list[tuple[str, str]]
    initialised: int
    removed: list[str]


class ModelAdapter(ABC):
    """The model-kind-specific half of the training and pruning strategies.

    One instance wraps one :class:`ReferenceModel`. Subclasses set :attr:`kind` and implement
    the abstract methods; every method gets the module to work on explicitly (the teacher,
    a student, a pruned copy), so one adapter serves all of them.
    """

    kind: ClassVar[ModelKind]
    #: The component (a key of ``model.components()``) that is trained, pruned or distilled.
    role: ClassVar[str] = "denoiser"
    #: Student blocks that can be removed: token -> what it removes (for ``distill:drop=``).
    drop_choices: ClassVar[dict[str, str]] = {}
    #: The removal used when ``drop`` is not given.
    default_drop: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: ReferenceModel) -> None:
        self.model = model

    # -- what can be done ---------------------------------------------------------------
    def module(self) -> nn.Module:
        """The component the strategies change (``components()[role]``)."""
        return self.model.components()[self.role]

    def set_module(self, module: nn.Module) -> None:
        """Put ``module`` back into the model in place of :meth:`module`."""
        self.model.set_component(self.role, module)

    def structure_reason(self) -> str | None:
        """Why the module cannot be pruned or distilled (e.g. it was already wrapped), or None."""
        return None

    def training_reason(self) -> str | None:
        """Why the model cannot be trained here (no training data...), or None."""
        if not has_data(self.model):
            return f"{self.model.name} has no training data ({no_data_reason(self.model, 'training data')})"
        try:
            next(iter(self.model.train_batches(1, 0)))
        except Exception as exc:  # noqa: BLE001 - any failure is the reason, in words
            return f"{self.model.name} has no training data ({type(exc).__name__}: {exc})"
        return None

    # -- training ------------------------------------------------------------------------
    @abstractmethod
    def make_batch(
        self, images: torch.Tensor, prompts: list[str], generator: torch.Generator
    ) -> TrainBatch:
        """Turn a batch of training data (images in [0, 1], prompts) into the module's
        inputs and the task's target; randomness (noise, timesteps, prompt dropout) comes
        from ``generator``."""

    def forward(self, module: nn.Module, batch: TrainBatch) -> torch.Tensor:
        """The module's prediction for ``batch`` (a tensor shaped like the target)."""
        out = module(**batch.inputs)
        return first_tensor(out)

    @abstractmethod
    def task_loss(self, output: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        """The loss the model was trained with (a scalar)."""

    # -- distillation --------------------------------------------------------------------
    def parse_drop(self, drop: str | None) -> tuple[str, ...]:
        """``mid/inner`` -> ("inner", "mid"); checks every token against :attr:`drop_choices`."""
        if drop is None or drop.strip() in ("", "default"):
            return tuple(sorted(self.default_drop))
        tokens = tuple(sorted({t.strip() for t in drop.split("/") if t.strip()}))
        unknown = [t for t in tokens if t not in self.drop_choices]
        if unknown or not tokens:
            allowed = ", ".join(f"{k} ({v})" for k, v in self.drop_choices.items()) or "none"
            raise StrategyError(
                f"cannot drop {drop!r} from a {self.kind} model; choose one or more of "
                f"{allowed}, joined with '/'"
            )
        return tokens

    @abstractmethod
    def build_student(self, teacher: nn.Module, drop: tuple[str, ...]) -> Student:
        """A smaller copy of ``teacher`` without the blocks named in ``drop``, initialised
        from the teacher's weights (BK-SDM's recipe)."""

    # -- structural pruning --------------------------------------------------------------
    @abstractmethod
    def prune_setup(self, module: nn.Module, attention: str) -> PruneSetup:
        """torch-pruning's arguments for ``module``. ``attention`` is ``heads`` (prune head
        dimensions alike in every head) or ``ignore`` (leave attention projections whole)."""

    def after_prune(self, module: nn.Module) -> None:  # noqa: B027 - optional hook
        """Fix attributes that cached a channel count before pruning (in place); by default
        there is nothing to fix."""

    def count_macs(self, module: nn.Module) -> tuple[int, int]:
        """(MACs, params) of one forward of ``module`` on its example input (batch 1)."""
        import contextlib
        import io

        import torch_pruning as tp

        inputs = self.example_inputs(module, batch_size=1)
        module_was_training = module.training
        module.eval()
        try:
            # torch-pruning prints a warning per module called with keyword arguments only.
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                macs, params = tp.utils.count_ops_and_params(module, inputs)
        finally:
            module.train(module_was_training)
        return int(macs), int(params)

    @abstractmethod
    def example_inputs(self, module: nn.Module, batch_size: int = 1) -> Any:
        """A real input of ``module`` (a dict of keyword arguments) for tracing and counting."""

    # -- fusion --------------------------------------------------------------------------
    def fuse(
        self, teacher: nn.Module, student: nn.Module, split: float | None, weight: float | None
    ) -> nn.Module:
        """A module that stands in for the teacher and runs teacher and student together:
        the student for the first ``split`` fraction of the steps, or a ``weight`` blend."""
        raise StrategyError(f"fusion is not implemented for {self.kind} models yet")

    # -- rebuilding cached results -------------------------------------------------------
    def load_state(self, module: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load ``state`` into ``module``, refusing any missing, extra or mis-shaped tensor."""
        own = module.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        bad = [k for k in own if k in state and own[k].shape != state[k].shape]
        if missing or extra or bad:
            raise StrategyError(
                "cached weights do not fit the rebuilt module "
                f"(missing {missing[:3]}, unexpected {extra[:3]}, shape mismatch {bad[:3]}); "
                "delete the cache entry to retrain"
            )
        module.load_state_dict(state)


def copy_kept_layers(teacher: nn.Module, student: nn.Module, prefix: str, kept: list[int]) -> int:
    """Initialise ``student`` from ``teacher``: its layer ``{prefix}.{k}`` takes the weights of
    the teacher's ``{prefix}.{kept[k]}``, every other tensor the teacher's of the same name.
    Returns the number of elements copied.

    Raises:
        StrategyError: a student tensor has no teacher tensor of the same shape.
    """
    t_state = teacher.state_dict()
    state = student.state_dict()
    depth = prefix.count(".") + 1  # the position of the layer index in a dotted key
    copied = 0
    for key in state:
        source = key
        if key.startswith(prefix + "."):
            parts = key.split(".")
            parts[depth] = str(kept[int(parts[depth])])
            source = ".".join(parts)
        if source not in t_state or t_state[source].shape != state[key].shape:
            raise StrategyError(f"student tensor {key} has no teacher counterpart {source}")
        state[key] = t_state[source].detach().clone()
        copied += state[key].numel()
    student.load_state_dict(state)
    return copied


def first_tensor(out: Any) -> torch.Tensor:
    """The prediction in a model's output: a tensor, the first item of a tuple, or ``.sample``."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    for attr in ("sample", "logits"):
        value = getattr(out, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find the prediction in a {type(out).__name__}")


def adapter_reason(model: ReferenceModel) -> str | None:
    """Why ``model`` has no adapter (in words), or None when :func:`get_adapter` will work."""
    entry = ADAPTERS.get(model.kind)
    if entry is None:
        kinds = ", ".join(sorted(ADAPTERS))
        return f"no strategy adapter for model kind {model.kind!r} (adapters exist for {kinds})"
    try:
        _load_class(entry)
    except ModuleNotFoundError as exc:
        if exc.name and entry.startswith(exc.name):
            return f"the adapter for {model.kind!r} models ({entry}) has not been written yet"
        return f"the adapter for {model.kind!r} models cannot be imported: {exc}"
    except (ImportError, AttributeError) as exc:
        return f"the adapter for {model.kind!r} models cannot be imported: {exc}"
    return None


def get_adapter(model: ReferenceModel) -> ModelAdapter:
    """The adapter for ``model.kind``; raises :class:`StrategyError` with the reason if none."""
    reason = adapter_reason(model)
    if reason:
        raise StrategyError(reason)
    return _load_class(ADAPTERS[model.kind])(model)


def _load_class(entry: str) -> Callable[..., ModelAdapter]:
    module_name, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module_name), attr)
