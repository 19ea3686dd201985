"""torch.compile: trace the denoiser into graphs and generate fused kernels for them.

The denoiser is replaced by its ``torch.compile`` wrapper, through which the pipeline still
reaches the original module's attributes (config, dtype, diffusers' cache contexts).
Compilation is lazy: it happens in the first generation call (and again for each new input
shape or guard failure), which the harness runs as a warm-up call; with the default two
warm-up calls the timed loop is steady on the CPU (``reduce-overhead`` on a GPU wants a third,
to record its CUDA graphs). The time spent compiling is a cold cost: it is read from dynamo's
own compile-time counters (falling back to the wall time of the first call) and kept up to
date in ``model.notes["cold"]["compile_s"]`` (with the number of calls that compiled, in
``compiles``), which the runner copies into the record's ``cold`` costs after timing.

Numerics: inductor reorders and fuses floating-point work, so outputs are not bit-equal to
eager. On the embedded models the generated images (in [0, 1], fp32) stay within
:data:`TOLERANCE` of eager's (checked in ``tests/test_strategies_compile.py``; measured:
PSNR 139 dB against eager on digits-unet, 135 dB on digits-dit).

Several compiled models in one process: diffusers' denoisers all enter through one shared
``forward`` wrapper (``diffusers.utils.peft_utils``), and dynamo keeps at most
``recompile_limit`` (8) compiled variants per function, after which it runs the function
eagerly, without a word in the results. A measurement with a few compiled arms (``compile``,
``bf16+compile``, ``quant+compile`` on two models) passes that, so the strategy raises the
limit to :data:`RECOMPILE_LIMIT` (never lowers it), and ``cold.compiles`` (0: nothing was
compiled) tells whether an arm really ran compiled.

Scope (``scope=``): ``full`` compiles the whole denoiser as one program; ``blocks`` compiles
each repeated block on its own (regional compilation, as diffusers' ``compile_repeated_blocks``:
like blocks share one compiled program, so compiling costs a fraction; the code between the
blocks stays eager). Measured on the CPU (2 threads, batch 8, 10 interleaved rounds, cold
inductor cache): on ``arch:sd15@tiny`` full compile ran 1.37x [1.33-1.41] after 64 s of
compiling, blocks 1.03x (n.s.) after 12 s: a UNet's gain on the CPU is in its ResNet blocks'
fused normalisation and activations, which regional compilation leaves eager (compiling the
ResNet blocks too took 71 s and ran 0.95x). On ``arch:flux@tiny`` blocks ran 1.23x after 23 s
(full: 1.28x and 1.31x in two matrices): transformer denoisers, whose work is all in their blocks, keep
most of the gain.

Modes (``mode=``): ``default``; ``reduce-overhead`` (CUDA graphs: launch overhead removed,
needs a GPU and static shapes); ``max-autotune`` (benchmarks kernel choices while compiling:
long compiles); ``max-autotune-no-cudagraphs``. Caches and token merging stack under it (their
Python-side decisions become graph breaks, so their graphs are smaller).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from strategies.core.base import Strategy, StrategyConfig, param

#: Largest absolute difference between compiled and eager images (values in [0, 1], fp32)
#: that still counts as "the same output".
TOLERANCE = 2e-3

#: dynamo's per-function variant limit this strategy needs (see the module docstring).
RECOMPILE_LIMIT = 64

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SCOPES = ("full", "blocks")
BACKENDS = ("inductor", "aot_eager", "eager")


@dataclass(frozen=True)
class Config(StrategyConfig):
    """How to compile the denoiser."""

    mode: str = param("default", "torch.compile mode", choices=MODES)
    fullgraph: bool = param(False, "fail instead of splitting the graph at unsupported code")
    dynamic: bool | None = param(
        None, "compile for dynamic shapes (None: let dynamo decide after a shape changes)"
    )
    backend: str = param(
        "inductor",
        "compiler backend (aot_eager/eager only trace: for debugging, no speedup expected)",
        choices=BACKENDS,
    )

    scope: str = param(
        "full",
        "full: the whole denoiser as one program; blocks: each repeated block on its own "
        "(regional compilation: one compile serves every block of a kind, much shorter "
        "compiles; the code between blocks stays eager)",
        choices=SCOPES,
    )

    always_show = ("mode",)


def _dynamo_compile_seconds() -> float | None:
    """Seconds dynamo has spent compiling in this process (None where torch does not say)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:  # pragma: no cover - older or newer torch
        return None
    return float(sum(compilation_time_metrics.get("_compile.compile_inner", [])))


class _CompileClock:
    """Wraps the compiled module's calls and adds the compile time they spend to ``cold``."""

    def __init__(self, cold: dict[str, Any]) -> None:
        self.cold = cold
        self.cold.setdefault("compile_s", 0.0)
        self.cold.setdefault("compiles", 0)
        self._before: float | None = None
        self._t0 = 0.0

    def pre(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        self._before = _dynamo_compile_seconds()
        self._t0 = time.perf_counter()

    def post(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        after = _dynamo_compile_seconds()
        if self._before is not None and after is not None:
            spent = after - self._before
        else:  # no counters: count the first call's wall time as compile time
            spent = time.perf_counter() - self._t0 if self.cold["compiles"] == 0 else 0.0
        if spent > 0:
            self.cold["compile_s"] = round(self.cold["compile_s"] + spent, 4)
            self.cold["compiles"] += 1


def raise_recompile_limit(limit: int = RECOMPILE_LIMIT) -> int:
    """Raise dynamo's per-function limit on compiled variants to at least ``limit`` (both its
    current and its former name); returns the limit now in force."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name) and getattr(config, name) < limit:
            setattr(config, name, limit)
    return int(getattr(config, "recompile_limit", getattr(config, "cache_size_limit", limit)))


def repeated_blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The sub-modules regional compilation compiles: those whose class the module names in
    ``_repeated_blocks`` (diffusers' declaration: the UNets' ``BasicTransformerBlock``, Flux's
    double- and single-stream blocks); for a denoiser that declares none, the classes found at
    least twice in its own ``...blocks`` module lists (PixArt's, SD3's and Sana's
    ``transformer_blocks``). Empty when there are none."""
    kinds = set(getattr(module, "_repeated_blocks", None) or ())
    if not kinds:
        for name, child in module.named_children():
            if name.endswith("blocks") and isinstance(child, torch.nn.ModuleList):
                names = [type(m).__name__ for m in child]
                kinds |= {n for n in names if names.count(n) >= 2}
    return [m for m in module.modules() if type(m).__name__ in kinds]


def compile_module(
    module: torch.nn.Module, config: Config, cold: dict[str, Any] | None = None,
    in_place: bool = False,
) -> torch.nn.Module:
    """Compile ``module`` as ``config`` says; the time spent compiling accumulates into
    ``cold`` (if given).

    ``scope="full"`` returns the ``torch.compile`` wrapper (an ``OptimizedModule``: attribute
    access reaches the original module; its state dict keys gain an ``_orig_mod.`` prefix).
    ``scope="blocks"`` compiles every :func:`repeated_blocks` sub-module in place
    (``nn.Module.compile``) and returns ``module`` itself; so does ``in_place=True`` with
    ``scope="full"`` (for a module its parent calls directly).

    Raises:
        ValueError: ``scope="blocks"`` on a module that declares no repeated blocks.
    """
    options: dict[str, Any] = {
        "fullgraph": config.fullgraph,
        "dynamic": config.dynamic,
        "backend": config.backend,
    }
    if config.backend == "inductor":
        options["mode"] = config.mode
    if config.scope == "blocks":
        blocks = repeated_blocks(module)
        if not blocks:
            raise ValueError(f"{type(module).__name__} declares no repeated blocks to compile")
        for block in blocks:
            block.compile(**options)
        compiled = module
    elif in_place:
        module.compile(**options)
        compiled = module
    else:
        compiled = torch.compile(module, **options)
    if cold is not None:
        clock = _CompileClock(cold)
        # Hooks on the outer module run outside the compiled regions.
        compiled.register_forward_pre_hook(clock.pre, with_kwargs=True)
        compiled.register_forward_hook(clock.post, with_kwargs=True)
    return compiled


def _target(model) -> torch.nn.Module:
    """The module compiling must reach: the denoiser, or the sub-module a model names as the
    one its generation calls (``compile_entry``, e.g. Janus's language model)."""
    entry = getattr(model, "compile_entry", "")
    denoiser = model.components()["denoiser"]
    return denoiser.get_submodule(entry) if entry else denoiser


class Compile(Strategy):
    """Compile the denoiser with torch.compile (inductor by default)."""

    name = "compile"
    summary = "torch.compile the denoiser (mode=default|reduce-overhead|max-autotune); compile time is a cold cost"
    Config = Config
    stage = Strategy.STAGE_COMPILE
    exclusive_group = "compilation"

    def supports_device(self, device: str) -> str | None:
        if self.config.mode == "reduce-overhead" and not device.startswith("cuda"):
            return "mode=reduce-overhead records CUDA graphs and needs a CUDA device"
        if self.config.backend == "inductor" and device.startswith("cpu"):
            import shutil

            if not any(shutil.which(cc) for cc in ("g++", "clang++", "c++")):
                return "inductor needs a C++ compiler (g++ or clang++) on the CPU; none is installed"
        return None

    def supports(self, model) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        denoiser = model.components().get("denoiser")
        if not isinstance(denoiser, torch.nn.Module):
            return f"{model.name} has no denoiser module to compile"
        target = _target(model)
        if self.config.scope == "blocks" and not repeated_blocks(target):
            return (
                f"scope=blocks compiles the blocks a denoiser repeats (diffusers' "
                f"_repeated_blocks, or a list of like blocks); {type(target).__name__} of "
                f"{model.name} declares none: use scope=full"
            )
        return None

    def apply(self, model):
        cold = model.notes.setdefault("cold", {})
        limit = raise_recompile_limit()
        entry = getattr(model, "compile_entry", "")
        if entry:  # the network runs through a sub-module: compile that one in place
            compile_module(_target(model), self.config, cold, in_place=True)
        else:
            model.set_component("denoiser", compile_module(model.denoiser, self.config, cold))
        model.notes["compile"] = {
            "target": entry or "denoiser",
            "mode": self.config.mode,
            "backend": self.config.backend,
            "scope": self.config.scope,
            "recompile_limit": limit,
            "note": "compile happens in the first generation call (a warm-up call); "
            "cold.compile_s is dynamo's compile time",
        }
        return model
