"""What the training strategies share: batches, the loop, the weight cache and cost records.

* :func:`training_batches`: the model's training data, augmented (:mod:`strategies.core.augment`),
  turned into the denoiser's inputs by the model's adapter.
* :func:`fit`: AdamW with warm-up and cosine decay, gradient clipping, a tqdm bar showing the
  loss terms; returns the wall time and a loss history.
* :func:`train_or_load`: builds the module's architecture, then loads its trained weights from
  the cache (safetensors under ``cache_dir("strategies")``) or trains and stores them. The key
  hashes the teacher's weights (``model.fingerprint()``), the strategy's config and
  :data:`CODE_VERSION`; the training time is kept with the weights, so a cache hit still
  reports what the result cost to make.
* :func:`record_cold` (:func:`record_trained` for a :class:`Trained`): writes the one-off cost
  into ``model.notes["cold"]``, from which the runner computes the break-even number of images.
* The parameters every training strategy declares (:func:`lr_param`, :func:`batch_size_param`,
  :func:`augment_param`, :func:`seed_param`; :class:`TrainingConfig` checks ``augment``) and
  what their records say (:func:`student_meta`, :func:`training_notes`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.core.cache import cache_dir
from bench.models.base import has_data, no_data_reason
from strategies.core.augment import AugmentConfig
from strategies.core.augment import augment as apply_augment
from strategies.core.base import Strategy, StrategyConfig, StrategyError, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel
    from strategies.adapters.base import ModelAdapter, TrainBatch

#: Bump when a change to the training code would change the trained weights: old cache
#: entries then stop matching instead of being reused.
CODE_VERSION = "1"

#: Help text of the learning-rate parameter of the strategies that train with :func:`fit`.
LR_HELP = "peak learning rate (AdamW, warm-up then cosine decay)"


# -- the parameters every training strategy has -------------------------------------------
def lr_param(default: float, help: str = LR_HELP) -> Any:
    """The learning-rate config field (a setup knob: each value is a new training)."""
    return param(default, help, low=1e-7, high=1.0, search=False)


def batch_size_param(help: str = "training batch size") -> Any:
    """The training batch-size config field (default 32; a setup knob)."""
    return param(32, help, low=1, high=4096, search=False)


#: Help text of the ``augment`` parameter (what :meth:`AugmentConfig.parse` reads).
AUGMENT_HELP = "data augmentation: none, all, or crop/color/noise joined with '/'"


def augment_param(default: str, help: str = AUGMENT_HELP) -> Any:
    """The ``augment`` config field (checked by :class:`TrainingConfig`; a setup knob)."""
    return param(default, help, search=False)


def seed_param(help: str) -> Any:
    """The ``seed`` config field of a training (default 0; a setup knob)."""
    return param(0, help, low=0, search=False)


@dataclass(frozen=True)
class TrainingConfig(StrategyConfig):
    """Base of the configs of strategies that train: checks the ``augment`` field a subclass
    declares (with :func:`augment_param`) when the config is made."""

    def __post_init__(self) -> None:
        super().__post_init__()
        augment_config(self.augment)  # type: ignore[attr-defined]


class TrainingStrategy(Strategy):
    """Base of the strategies that replace the denoiser by one they train (a student, a pruned
    and recovered copy): architecture stage, ``trains``, rewrites the denoiser."""

    stage = Strategy.STAGE_ARCHITECTURE
    trains = True
    rewrites = ("denoiser",)


def augment_config(text: str) -> AugmentConfig:
    """The augmentation a strategy's ``augment`` parameter names; a :class:`StrategyError`
    naming the parameter when it names none."""
    try:
        return AugmentConfig.parse(text)
    except ValueError as exc:
        raise StrategyError(f"parameter augment={text!r}: {exc}") from None


# -- data ----------------------------------------------------------------------------------
def training_batches(
    model: ReferenceModel,
    adapter: ModelAdapter,
    batch_size: int,
    seed: int,
    augment: AugmentConfig,
) -> Iterator[TrainBatch]:
    """Endless training batches: augmented images made into the denoiser's inputs."""
    if not has_data(model):
        raise StrategyError(no_data_reason(model, "training data") + ": nothing can be trained on it")
    generator = torch.Generator().manual_seed(seed)
    for images, prompts in model.train_batches(batch_size, seed):
        images = images.float()
        if augment.enabled:
            images = apply_augment(images, augment, generator)
        yield adapter.make_batch(images, list(prompts), generator)


# -- the loop ------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What a training run cost and how the loss went.

    Attributes:
        seconds: wall time of the loop.
        steps: optimizer steps taken.
        history: every ``log_every`` steps, the smoothed loss terms (plus ``step``).
        final: the smoothed loss terms at the end.
    """

    seconds: float
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)


def fit(
    module: nn.Module,
    step_loss: Callable[[TrainBatch], tuple[torch.Tensor, dict[str, float]]],
    batches: Iterator[TrainBatch],
    *,
    steps: int,
    lr: float,
    desc: str,
    warmup: float = 0.05,
    grad_clip: float = 1.0,
    weight_decay: float = 0.0,
    show_progress: bool = True,
    after_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``module``'s trainable parameters for ``steps`` steps on ``step_loss``.

    ``step_loss(batch)`` returns the loss to minimise and its named terms (floats, shown on the
    progress bar). The learning rate warms up linearly over the first ``warmup`` fraction of
    the steps, then decays on a cosine to a tenth. ``after_step(step)``, when given, runs
    after every optimizer step (e.g. to update an EMA target network).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if steps <= 0:
        return FitResult(seconds=0.0, steps=0)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the module has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup_steps = max(1, int(warmup * steps))

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    log_every = max(1, steps // 20)
    smooth: dict[str, float] = {}
    history: list[dict[str, float]] = []
    module.train()
    bar = tqdm(range(steps), desc=desc, disable=not show_progress, mininterval=2.0, leave=False)
    try:
        for step in bar:
            batch = next(batches)
            loss, terms = step_loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            schedule.step()
            if after_step is not None:
                after_step(step)
            for name, value in {"loss": float(loss.detach()), **terms}.items():
                smooth[name] = value if name not in smooth else 0.95 * smooth[name] + 0.05 * value
            if (step + 1) % log_every == 0 or step + 1 == steps:
                history.append({"step": step + 1, **{k: round(v, 6) for k, v in smooth.items()}})
            bar.set_postfix({k: f"{v:.4f}" for k, v in smooth.items()}, refresh=False)
    finally:
        bar.close()
        module.eval()
    return FitResult(
        seconds=time.perf_counter() - start, steps=steps, history=history, final=dict(smooth)
    )


# -- the cache -----------------------------------------------------------------------------
def cache_key(strategy: str, fingerprint: str, config: Mapping[str, Any]) -> str:
    """Hash of (strategy, the teacher's weights fingerprint, config, :data:`CODE_VERSION`)."""
    payload = json.dumps(
        {"strategy": strategy, "teacher": fingerprint, "config": dict(config), "code": CODE_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def cache_path(key: str) -> Path:
    """Where the weights of ``key`` are (or will be) stored."""
    return cache_dir("strategies") / f"{key}.safetensors"


def load_cached(key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state dict, metadata) stored under ``key``, or None when there is none (or it is
    unreadable: a broken entry is retrained, not trusted)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("accelbench", "{}"))
        state = load_file(str(path))
    except Exception:  # noqa: BLE001 - a truncated or foreign file: ignore it
        return None
    return state, meta


def save_cached(key: str, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Store ``state`` (safetensors) with ``meta`` (JSON in the file's metadata), atomically."""
    from safetensors.torch import save_file

    path = cache_path(key)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"accelbench": json.dumps(dict(meta), default=str)})
    os.replace(tmp, path)
    return path


@dataclass
class Trained:
    """A module with trained weights and where they came from.

    Attributes:
        module: the trained module.
        meta: what the training stored (``training_s``, losses, config...).
        cache_hit: True when the weights were loaded rather than trained now.
        key: the cache key.
    """

    module: nn.Module
    meta: dict[str, Any]
    cache_hit: bool
    key: str


def train_or_load(
    *,
    strategy: str,
    model: ReferenceModel,
    config: Mapping[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict[str, Any]],
    load: Callable[[nn.Module, dict[str, torch.Tensor]], None],
    use_cache: bool = True,
) -> Trained:
    """Build the architecture, then load its weights from the cache or train and store them.

    Args:
        strategy: the strategy's name (part of the key).
        model: the model being changed; its fingerprint is part of the key.
        config: the settings that determine the trained weights.
        build: makes the untrained module (a student, a pruned copy).
        train: trains it in place and returns metadata; must include ``training_s``.
        load: loads a cached state dict into a freshly built module (checks shapes).
        use_cache: False trains every time (the result is still stored).
    """
    fingerprint = model.fingerprint()
    key = cache_key(strategy, fingerprint, config)
    module = build()
    cached = load_cached(key) if use_cache else None
    if cached is not None:
        state, meta = cached
        load(module, state)
        module.eval()
        return Trained(module=module, meta=meta, cache_hit=True, key=key)
    meta = dict(train(module))
    if "training_s" not in meta:
        raise ValueError("the train function must report training_s")
    meta.update(
        {
            "strategy": strategy,
            "config": dict(config),
            "code_version": CODE_VERSION,
            "teacher_fingerprint": fingerprint,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "device": str(model.device),
            "threads": torch.get_num_threads(),
        }
    )
    save_cached(key, module.state_dict(), meta)
    module.eval()
    return Trained(module=module, meta=meta, cache_hit=False, key=key)


def record_cold(model: ReferenceModel, seconds: float, cache_hit: bool) -> None:
    """Add a one-off training cost to ``model.notes["cold"]`` (summed over a stack)."""
    cold = model.notes.setdefault("cold", {})
    cold["training_s"] = float(cold.get("training_s", 0.0)) + float(seconds)
    cold["cache_hit"] = bool(cold.get("cache_hit", True)) and cache_hit


def record_trained(model: ReferenceModel, trained: Trained) -> None:
    """:func:`record_cold` for a :class:`Trained` result: its training time and cache hit."""
    record_cold(model, float(trained.meta.get("training_s", 0.0)), trained.cache_hit)


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def student_meta(result: FitResult, student: nn.Module) -> dict[str, Any]:
    """What a student's training stores with its weights (the ``train`` function's return
    value for :func:`train_or_load`)."""
    return {
        "training_s": result.seconds,
        "steps": result.steps,
        "final_loss": result.final,
        "history": result.history,
        "params_student": count_params(student),
    }


def training_notes(trained: Trained, **extra: Any) -> dict[str, Any]:
    """The ``training`` block of a trained strategy's notes: time, steps, final loss and
    threads of the training, ``extra``, and where the weights came from."""
    meta = trained.meta
    return {
        "training_s": meta.get("training_s"),
        "steps": meta.get("steps"),
        "final_loss": meta.get("final_loss"),
        "threads": meta.get("threads"),
        **extra,
        "cache_hit": trained.cache_hit,
        "cache_key": trained.key,
    }
