"""The protocol every reference model follows, so strategies and the harness never care which.

A :class:`ReferenceModel` wraps a loaded generator. Strategies change the modules it exposes
(``denoiser``, ``text_encoder``, ``decoder``) or the call arguments it generates with; the
harness only calls :meth:`ReferenceModel.generate`.

Autoregressive image-token models (``kind == "autoregressive"``) also answer the *token
protocol*, so that decoding and training strategies never import a model's module:
:attr:`~ReferenceModel.tokens_per_image`, :attr:`~ReferenceModel.token_grid`,
:meth:`~ReferenceModel.decoding_reason` and :meth:`~ReferenceModel.set_decoder` (the
decoding hook: a decoder from :mod:`bench.models.ar_decoding` or a strategy replaces plain
token-by-token decoding), :meth:`~ReferenceModel.default_draft` (the draft network of
speculative decoding), :meth:`~ReferenceModel.token_batches` and
:meth:`~ReferenceModel.token_sequences` (token sequences for training). Every other model
keeps the defaults below, which say in words that it has none of these.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

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
    """A loaded image generator and everything a benchmark needs around it.

    Attributes:
        name: registry name, e.g. ``digits-unet``.
        kind: ``diffusion-unet``, ``diffusion-dit`` or ``autoregressive``: strategies use it to
            decide whether they apply.
        device: where the model runs.
        dtype: the dtype of the model's weights.
        call_args: default keyword arguments of :meth:`generate` (steps, guidance, ...);
            strategies may change them (``steps:n=10`` sets ``num_inference_steps``).
        applied: names of the strategies applied so far, in order.
        notes: what strategies report about themselves (params removed, training cost...).
        pipe: the diffusers pipeline, for diffusion models (None otherwise).
    """

    name: str
    kind: str
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

    #: Attributes holding networks that score the model's images rather than generate them
    #: (not counted as the model's weights).
    scoring_attrs: ClassVar[tuple[str, ...]] = ("_classifier",)

    # -- generation -------------------------------------------------------------------
    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        step_callback: StepCallback | None = None,
        **call_args: Any,
    ) -> torch.Tensor:
        """Generate one image per (prompt, seed): float NCHW in [0, 1], on the CPU.

        The same prompt and seed must give the same image on every call (up to the
        numerics of whatever strategies changed).
        """

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

    # -- data the quality metrics and training strategies need -----------------------
    @abstractmethod
    def prompts(self, n: int) -> tuple[list[str], list[int]]:
        """``n`` benchmark prompts and, where the domain has them, their class labels."""

    @abstractmethod
    def real_images(self, split: str = "heldout") -> torch.Tensor:
        """Real images of the model's domain (float NCHW in [0, 1]) for distribution metrics."""

    @abstractmethod
    def train_batches(
        self, batch_size: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """An endless iterator of (images in [0, 1], prompts) from the model's training data."""

    def classifier(self) -> torch.nn.Module | None:
        """A classifier of the domain (logits over classes) used for prompt adherence and
        as the feature extractor of FID/KID; None where the domain has none."""
        return None

    # -- the token protocol (autoregressive image-token models) ------------------------
    @property
    def tokens_per_image(self) -> int | None:
        """Tokens generated per image by a token model; None for models that do not
        generate tokens."""
        return None

    @property
    def token_grid(self) -> tuple[int, int] | None:
        """(rows, cols) of the image-token grid a token model writes in raster order;
        None for models without one."""
        return None

    def decoding_reason(self) -> str | None:
        """Why :meth:`set_decoder` cannot be used on this model, in words; None when it can
        (the model decodes through :mod:`bench.models.ar_decoding`)."""
        return (
            f"{self.name} ({self.kind}) does not generate image tokens one decoding step at a "
            "time, so it has no decoding loop to replace"
        )

    def set_decoder(self, decoder: Any) -> None:
        """Decode with ``decoder`` (an :class:`bench.models.ar_decoding.Decoder`; None:
        plain autoregressive decoding) from now on.

        Raises:
            NotImplementedError: the model has no decoding loop (see :meth:`decoding_reason`).
        """
        raise NotImplementedError(self.decoding_reason())

    def default_draft(self) -> torch.nn.Module:
        """A fresh draft network for speculative decoding (smaller than the model's own
        network, same vocabulary), as shipped with the model.

        Raises:
            NotImplementedError: the model has no draft; the message says why.
            FileNotFoundError: the draft's weights are missing; the message names the
                command that makes them.
        """
        raise NotImplementedError(
            f"{self.name} ({self.kind}) has no draft model: speculative decoding needs a "
            "token model with a smaller draft network"
        )

    def token_batches(self, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
        """Endless shuffled batches of training token sequences ``(batch, length)`` (prompt
        tokens, then image tokens) of a token model.

        Raises:
            NotImplementedError: the model has no token training data.
        """
        raise NotImplementedError(f"{self.name} ({self.kind}) has no token training data")

    def token_sequences(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Training token sequences ``(N, length)`` of a token model for ``images`` (float
        NCHW in [0, 1], e.g. from :meth:`train_batches`, possibly augmented) and their
        ``prompts``.

        Raises:
            NotImplementedError: the model cannot turn images into its tokens.
        """
        raise NotImplementedError(
            f"{self.name} ({self.kind}) cannot turn images into training token sequences"
        )

    # -- lifecycle ---------------------------------------------------------------------
    def clone(self, share_weights: bool = False) -> ReferenceModel:
        """A copy that strategies can change without touching this model.

        ``share_weights=True`` (what the engine gives each stack): new module objects whose
        parameters and buffers alias this model's storage (:func:`bench.models.sharing.shared_copy`),
        so a stack costs only the weights it rewrites. Otherwise a full deep copy.
        """
        intact = self.source_intact()
        if share_weights:
            from bench.models.sharing import shared_copy

            twin = shared_copy(self)
        else:
            twin = copy.deepcopy(self)
        if intact:
            twin.set_source(self.source)
        else:
            twin.source = twin.source_versions = None
        return twin

    def set_source(self, source: str | None) -> None:
        """Identify the weights by ``source`` from now on (see :attr:`source`)."""
        from bench.models.sharing import version_sum

        self.source = source
        self.source_versions = version_sum(self) if source is not None else None

    def source_intact(self) -> bool:
        """True when :attr:`source` still describes the weights: set, and no weight written
        in place since."""
        from bench.models.sharing import version_sum

        return self.source is not None and self.source_versions == version_sum(self)

    def fingerprint(self) -> str:
        """A short hash identifying the weights and settings: the cache key of baseline images
        and of strategies that train.

        From :attr:`source` (no weight is read) where the loader set it and no weight was
        written in place since, with the dtype, the strategies applied so far and the call
        arguments; else from every weight byte.
        """
        from bench.models import provenance

        args = repr(sorted(self.call_args.items()))
        if self.source_intact():
            return provenance.digest(self.name, self.source, str(self.dtype), self.applied, args)
        import hashlib

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
            "kind": self.kind,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "call_args": {k: v for k, v in self.call_args.items() if _jsonable(v)},
            "params": self.parameter_count(),
            "applied": list(self.applied),
            "random_weights": self.random_weights,
        }


def _jsonable(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, type(None)))
