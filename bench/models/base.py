"""The protocols reference models follow, by role, so strategies and the harness never care
which model they hold.

* :class:`ReferenceModel`, the *generator* protocol, which every model implements: a loaded
  generator whose modules (``denoiser``, ``text_encoder``, ``decoder``) or call arguments
  strategies change; the harness only calls :meth:`ReferenceModel.generate`.
* :class:`DataDomain`, for models with a domain of real data (the embedded digits models):
  real images for distribution metrics and training batches for strategies that train.
* :class:`TokenModel`, for autoregressive image-token models (``kind ==
  ModelKind.AUTOREGRESSIVE``), so that decoding strategies never import a model's module:
  :attr:`~TokenModel.tokens_per_image`, :attr:`~TokenModel.token_grid`,
  :meth:`~TokenModel.set_decoder` (the decoding hook: a decoder from
  :mod:`bench.models.ar_decoding` or a strategy replaces plain token-by-token decoding) and
  :meth:`~TokenModel.default_draft` (the draft network of speculative decoding);
  :class:`TokenData` adds token sequences for training (:meth:`~TokenData.token_batches`,
  :meth:`~TokenData.token_sequences`).

Ask whether a model plays a role with :func:`has_data`, :func:`has_tokens` and
:func:`has_token_data` (or ``isinstance``); :func:`no_data_reason` and :func:`decoding_reason`
say in words why it does not.
"""

from __future__ import annotations

import copy
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.core.errors import ModelError
from bench.core.kinds import ModelKind
from bench.models import provenance
from bench.models.sharing import shared_copy, version_sum

#: Called after every denoising (or decoding) step with the step index.
StepCallback = Callable[[int], None]


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a registry name (``digits-unet``) or ``hf:<repo id or path>``."""

    name: str
    device: str = "cpu"
    #: Run code shipped with a hub pipeline (never done unless asked for).
    trust_remote_code: bool = False
    #: Let a hub model be downloaded; by default only local files are used.
    allow_download: bool = False
    #: The dtype to load the weights in (``fp32``, ``bf16``, ``fp16``); None: the model's
    #: default on that device (see :func:`bench.models.registry.default_dtype`).
    dtype: str | None = None

    @property
    def is_hub(self) -> bool:
        return self.name.startswith("hf:")


@dataclass
class ReferenceModel(ABC):
    """The generator protocol: a loaded image generator and everything a benchmark needs
    around it.

    Attributes:
        name: registry name, e.g. ``digits-unet``.
        kind: a :class:`~bench.core.kinds.ModelKind` (a plain string is converted):
            strategies use it to decide whether they apply.
        device: where the model runs.
        dtype: the dtype of the model's weights.
        call_args: default keyword arguments of :meth:`generate` (steps, guidance, ...);
            strategies may change them (``steps:n=10`` sets ``num_inference_steps``).
        applied: names of the strategies applied so far, in order.
        notes: what strategies report about themselves (params removed, training cost...).
        pipe: the diffusers pipeline, for diffusion models (None otherwise).
    """

    name: str
    kind: ModelKind
    device: torch.device
    dtype: torch.dtype = torch.float32
    call_args: dict[str, Any] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    #: Per-strategy notes recorded with results (e.g. params before and after pruning).
    notes: dict[str, Any] = field(default_factory=dict)
    #: The diffusers pipeline behind the model, where there is one (schedulers, hooks).
    pipe: Any = None
    #: True for architecture models built with random weights (``arch:``): their images
    #: mean nothing, so quality is unavailable except fidelity to the same model's baseline.
    random_weights: bool = False
    #: Strategies the model's own training prepared it for, each with what that means for
    #: its figures (recorded as a caveat with every result of a stack that uses it).
    trained_for: dict[str, str] = field(default_factory=dict)
    #: Where the weights come from, as a short identity computed without reading them
    #: (:mod:`bench.models.provenance`; set by the loader with :meth:`set_source`). None:
    #: the weights themselves are hashed.
    source: str | None = None
    #: The weights' version counters (summed) when the source was set: a weight written in
    #: place since then (by hand, not by a strategy) makes the source stale.
    source_versions: int | None = None
    #: Frames per second of the videos a video model writes (its published output rate);
    #: None for image models. A video model's :meth:`generate` returns ``(N, T, C, H, W)``.
    frame_rate: float | None = None

    #: Attributes holding networks that score the model's images rather than generate them
    #: (not counted as the model's weights).
    scoring_attrs: ClassVar[tuple[str, ...]] = ("_classifier",)
    #: Why a model that is not a :class:`DataDomain` has no data, where there is more to say
    #: than that it comes with none (see :func:`no_data_reason`).
    no_data: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.kind = ModelKind(self.kind)

    # -- generation -------------------------------------------------------------------
    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        step_callback: StepCallback | None = None,
        **call_args: Any,
    ) -> torch.Tensor:
        """Generate one image per (prompt, seed): float NCHW in [0, 1], on the CPU; a video
        model (:func:`is_video`) one video each, ``(N, T, C, H, W)`` (T frames).

        The same prompt and seed must give the same image on every call (up to the
        numerics of whatever strategies changed).
        """

    @property
    def frames_per_video(self) -> int | None:
        """Frames of one video a default call writes (``num_frames``); None for images."""
        if self.frame_rate is None:
            return None
        value = self.call_args.get("num_frames")
        return int(value) if value is not None else None

    @property
    def steps(self) -> int | None:
        """Number of denoising or decoding steps a default call makes, where defined."""
        value = self.call_args.get("num_inference_steps")
        return int(value) if value is not None else None

    # -- what strategies may change ----------------------------------------------------
    @abstractmethod
    def components(self) -> dict[str, torch.nn.Module]:
        """The modules a strategy may change: ``denoiser`` always; ``text_encoder`` and
        ``decoder`` where the model has them."""

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.components()["denoiser"]

    @abstractmethod
    def set_component(self, role: str, module: torch.nn.Module) -> None:
        """Replace the module playing ``role`` (a key of :meth:`components`)."""

    # -- prompts and scoring -----------------------------------------------------------
    @abstractmethod
    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        """``n`` benchmark prompts and, where the domain has them, their class labels."""

    def classifier(self) -> torch.nn.Module | None:
        """A classifier of the domain (logits over classes) used for prompt adherence and
        as the feature extractor of FID/KID; None where the domain has none."""
        return None

    # -- compatibility: callers that predate the role split -----------------------------
    def real_images(self, split: str = "heldout") -> torch.Tensor:
        """Real images of a :class:`DataDomain`; every other model raises
        :class:`ModelError` saying why (ask :func:`has_data` instead of calling this)."""
        raise ModelError(no_data_reason(self, "real images for distribution metrics"))

    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Training batches of a :class:`DataDomain`; every other model raises
        :class:`ModelError` saying why (ask :func:`has_data` instead of calling this)."""
        raise ModelError(no_data_reason(self, "training data"))

    # -- lifecycle ---------------------------------------------------------------------
    def clone(self, share_weights: bool = False) -> ReferenceModel:
        """A copy that strategies can change without touching this model.

        ``share_weights=True`` (what the engine gives each stack): new module objects whose
        parameters and buffers alias this model's storage (:func:`bench.models.sharing.shared_copy`),
        so a stack costs only the weights it rewrites. Otherwise a full deep copy.
        """
        intact = self.source_intact()
        twin = shared_copy(self) if share_weights else copy.deepcopy(self)
        if intact:
            twin.set_source(self.source)
        else:
            twin.source = twin.source_versions = None
        return twin

    def set_source(self, source: str | None) -> None:
        """Identify the weights by ``source`` from now on (see :attr:`source`)."""
        self.source = source
        self.source_versions = version_sum(self) if source is not None else None

    def source_intact(self) -> bool:
        """True when :attr:`source` still describes the weights: set, and no weight written
        in place since."""
        return self.source is not None and self.source_versions == version_sum(self)

    def fingerprint(self) -> str:
        """A short hash identifying the weights and settings: the cache key of baseline images
        and of strategies that train.

        From :attr:`source` (no weight is read) where the loader set it and no weight was
        written in place since, with the dtype, the strategies applied so far and the call
        arguments; else from every weight byte.
        """
        args = repr(sorted(self.call_args.items()))
        if self.source_intact():
            return provenance.digest(self.name, self.source, str(self.dtype), self.applied, args)
        digest = hashlib.sha256(self.name.encode())
        for role, module in sorted(self.components().items()):
            digest.update(role.encode())
            for key, tensor in sorted(module.state_dict().items()):
                digest.update(key.encode())
                t = tensor.detach().cpu().contiguous()
                digest.update(str(t.dtype).encode())
                if t.numel():
                    digest.update(t.view(-1).view(torch.uint8).numpy().data)  # no copy
        digest.update(args.encode())
        return digest.hexdigest()[:16]

    def parameter_count(self) -> int:
        """Parameters of all components together (shared modules counted once)."""
        seen: set[int] = set()
        total = 0
        for module in self.components().values():
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
        return total

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary saved with every result."""
        return {
            "name": self.name,
            "kind": str(self.kind),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "call_args": {k: v for k, v in self.call_args.items() if _jsonable(v)},
            "params": self.parameter_count(),
            "applied": list(self.applied),
            "random_weights": self.random_weights,
            **({"video": {"frames_per_video": self.frames_per_video,
                          "frame_rate": self.frame_rate}} if is_video(self) else {}),
        }


class DataDomain(ABC):
    """The data-domain protocol: a model with real images and training data (mixed into a
    :class:`ReferenceModel`)."""

    @abstractmethod
    def real_images(self, split: str = "heldout") -> torch.Tensor:
        """Real images of the model's domain (float NCHW in [0, 1]) for distribution metrics."""

    @abstractmethod
    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """An endless iterator of (images in [0, 1], prompts) from the model's training data."""


class TokenModel(ABC):
    """The token protocol of autoregressive image-token models (mixed into a
    :class:`ReferenceModel`): what decoding strategies need to replace the decoding loop."""

    @property
    @abstractmethod
    def tokens_per_image(self) -> int:
        """Tokens generated per image."""

    @property
    @abstractmethod
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of the image-token grid the model writes in raster order."""

    def decoding_reason(self) -> str | None:
        """Why :meth:`set_decoder` cannot be used on this model, in words; None when it can
        (the model decodes through :mod:`bench.models.ar_decoding`)."""
        return None

    @abstractmethod
    def set_decoder(self, decoder: Any) -> None:
        """Decode with ``decoder`` (an :class:`bench.models.ar_decoding.Decoder`; None:
        plain autoregressive decoding) from now on."""

    @abstractmethod
    def default_draft(self) -> torch.nn.Module:
        """A fresh draft network for speculative decoding (smaller than the model's own
        network, same vocabulary), as shipped with the model.

        Raises:
            FileNotFoundError: the draft's weights are missing; the message names the
                command that makes them.
        """


class TokenData(ABC):
    """Token sequences for training, of a token model that is also a :class:`DataDomain`."""

    @abstractmethod
    def token_batches(self, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
        """Endless shuffled batches of training token sequences ``(batch, length)`` (prompt
        tokens, then image tokens)."""

    @abstractmethod
    def token_sequences(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Training token sequences ``(N, length)`` for ``images`` (float NCHW in [0, 1],
        e.g. from :meth:`DataDomain.train_batches`, possibly augmented) and their
        ``prompts``."""


def is_video(model: Any) -> bool:
    """True for a model whose outputs are videos, ``(N, T, C, H, W)`` (it declares its
    :attr:`~ReferenceModel.frame_rate`)."""
    return getattr(model, "frame_rate", None) is not None


def has_data(model: Any) -> bool:
    """True for a model with real images and training data (a :class:`DataDomain`)."""
    return isinstance(model, DataDomain)


def has_tokens(model: Any) -> bool:
    """True for an image-token model that answers the token protocol (:class:`TokenModel`)."""
    return isinstance(model, TokenModel)


def has_token_data(model: Any) -> bool:
    """True for a token model with training token sequences (:class:`TokenData`)."""
    return isinstance(model, TokenData)


def no_data_reason(model: Any, wanted: str = "data") -> str | None:
    """Why ``model`` has no ``wanted`` (real images, training data) in words; None for a
    :class:`DataDomain`."""
    if has_data(model):
        return None
    why = getattr(model, "no_data", "")
    return f"{model.name}: {why}" if why else f"{model.name} comes with no {wanted}" + (
        "; point the quality settings at a folder of reference images"
        if wanted.startswith("real images") else ""
    )


def decoding_reason(model: Any) -> str | None:
    """Why ``model``'s decoding loop cannot be replaced, in words; None when it can."""
    if not has_tokens(model):
        return (
            f"{model.name} ({model.kind}) does not generate image tokens one decoding step at "
            "a time, so it has no decoding loop to replace"
        )
    return model.decoding_reason()


def _jsonable(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, type(None)))


__all__ = [
    "DataDomain",
    "ModelSpec",
    "ReferenceModel",
    "StepCallback",
    "TokenData",
    "TokenModel",
    "decoding_reason",
    "has_data",
    "has_token_data",
    "has_tokens",
    "is_video",
    "no_data_reason",
]
