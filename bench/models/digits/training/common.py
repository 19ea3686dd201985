"""What the digits training scripts share: their options, the learning-rate schedule with an
optional time budget, the EMA of the weights, the training loop, keeping the better of the raw
and the EMA weights, prompt adherence, and the record each run writes next to its weights."""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.models.base import ReferenceModel
from bench.models.digits import training_command

#: ``--max-minutes`` help of the scripts whose schedule follows the time budget.
BUDGET_HELP = (
    "time budget: the learning-rate schedule follows whichever of steps and time is further "
    "along, and training stops at the budget (the result then depends on machine speed); "
    "0: none"
)


def parser(doc: str | None, **defaults: Any) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` with the options every
    script shares, each added where ``defaults`` gives it a default (``None``: left out):
    ``steps``, ``batch_size``, ``lr``, ``seed`` (default 0), ``warmup``, ``ema_decay``,
    ``out``, ``save_every``, ``max_minutes`` (with ``max_minutes_help``), ``threads``,
    ``eval_images`` and ``min_adherence``; ``bf16=True`` adds ``--no-bf16``."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    types = {"steps": int, "batch_size": int, "lr": float, "seed": int, "warmup": int,
             "ema_decay": float, "out": Path, "save_every": int, "max_minutes": float,
             "threads": int, "eval_images": int, "min_adherence": float}
    defaults.setdefault("seed", 0)
    budget_help = defaults.pop("max_minutes_help", BUDGET_HELP)
    for name, kind in types.items():
        if defaults.get(name) is None:
            continue
        help_text = budget_help if name == "max_minutes" else None
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=defaults[name],
                       help=help_text)
    if defaults.get("bf16"):
        p.add_argument("--no-bf16", dest="bf16", action="store_false",
                       help="train in float32 (default: bfloat16 autocast, weights in float32)")
    return p


def add_arch_options(p: argparse.ArgumentParser, arch: dict[str, int]) -> None:
    """``--layers``, ``--hidden``, ``--heads`` and ``--intermediate`` of a digits LM."""
    for key, value in arch.items():
        p.add_argument(f"--{key}", type=int, default=value)


def arch_of(args: argparse.Namespace) -> dict[str, int]:
    """The LM architecture given by :func:`add_arch_options`' options."""
    return {k: getattr(args, k) for k in ("layers", "hidden", "heads", "intermediate")}


class Schedule:
    """Linear warm-up, then cosine decay to ``floor`` of the peak learning rate.

    Progress counts steps (from the start, or from the end of the warm-up with
    ``after_warmup``) or, when a time budget is set and ``time_decay``, whichever of steps and
    elapsed time is further along, so a run on a busy machine still ends its schedule.
    """

    def __init__(self, opt: torch.optim.Optimizer, lr: float, warmup: int, steps: int,
                 max_minutes: float = 0.0, start: float | None = None, floor: float = 0.05,
                 after_warmup: bool = False, time_decay: bool = True) -> None:
        self.opt, self.lr, self.warmup, self.steps = opt, lr, warmup, steps
        self.floor, self.after_warmup, self.time_decay = floor, after_warmup, time_decay
        self.budget_s = 60 * max_minutes
        self.start = time.perf_counter() if start is None else start

    def elapsed(self) -> float:
        """Fraction of the time budget spent (0 without one)."""
        return (time.perf_counter() - self.start) / self.budget_s if self.budget_s else 0.0

    def progress(self, step: int) -> float:
        """Fraction of training done after ``step`` steps."""
        if self.after_warmup:
            done = (step - self.warmup) / max(1, self.steps - self.warmup)
        else:
            done = step / self.steps
        if self.time_decay:
            done = max(done, self.elapsed())
        return min(done, 1.0)

    def factor(self, step: int) -> float:
        """The learning rate of ``step`` relative to the peak."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * self.progress(step)))

    def set(self, step: int) -> float:
        """Set the learning rate of ``step`` on the optimizer; returns it."""
        lr = self.lr * self.factor(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def out_of_time(self, step: int) -> bool:
        """True when the time budget is spent before the last step."""
        return bool(self.budget_s) and self.elapsed() >= 1.0 and step < self.steps


class EMA:
    """An exponential moving average of ``modules``' weights (frozen copies, eval mode); the
    decay ramps up as ``(1 + step) / (10 + step)`` to ``decay``."""

    def __init__(self, modules: dict[str, torch.nn.Module], decay: float) -> None:
        self.modules, self.decay = modules, decay
        self.copies = {k: copy.deepcopy(m).eval().requires_grad_(False) for k, m in modules.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the averages towards the modules' weights after ``step``."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, module in self.modules.items():
            for pe, p in zip(self.copies[name].parameters(), module.parameters(), strict=True):
                pe.lerp_(p.detach(), 1 - decay)


@dataclass
class Loop:
    """One training run's loop: ``loss(step)`` gives the loss to minimise and the figures to
    show (running averages in the progress bar); the optimizer steps with the gradients
    clipped to ``clip`` (None: not clipped).

    Attributes:
        steps_done: steps run (after :meth:`run`).
        seconds: wall time of :meth:`run`.
        averages: the running averages of the shown figures.
    """

    opt: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    desc: str
    schedule: Schedule | None = None
    ema: EMA | None = None
    clip: float | None = 1.0
    smoothing: float = 0.95
    mininterval: float = 10
    #: Called with the step count every ``save_every`` steps (not after the last).
    checkpoint: Callable[[int], None] | None = None
    save_every: int = 0
    #: Called after every optimizer step (e.g. another learning-rate scheduler's ``step``).
    after_step: Callable[[], None] | None = None
    steps_done: int = 0
    seconds: float = 0.0
    averages: dict[str, float] = field(default_factory=dict)

    def run(self, steps: int, loss: Callable[[int], tuple[torch.Tensor, dict[str, float]]]) -> Loop:
        """Train for ``steps`` steps (fewer when the schedule's time budget runs out)."""
        start = time.perf_counter()
        step = 0
        bar = tqdm(range(steps), desc=self.desc, mininterval=self.mininterval)
        for step in bar:
            lr = self.schedule.set(step) if self.schedule is not None else None
            value, shown = loss(step)
            self.opt.zero_grad(set_to_none=True)
            value.backward()
            if self.clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.opt.step()
            if self.after_step is not None:
                self.after_step()
            if self.ema is not None:
                self.ema.update(step)
            for key, x in shown.items():
                old = self.averages.get(key)
                self.averages[key] = x if old is None else self.smoothing * old + (1 - self.smoothing) * x
            postfix = {k: f"{v:.4f}" for k, v in self.averages.items()}
            if lr is not None:
                postfix["lr"] = f"{lr:.2e}"
            bar.set_postfix(postfix, refresh=False)
            if self.checkpoint and self.save_every and (step + 1) % self.save_every == 0 \
                    and step + 1 < steps:
                self.checkpoint(step + 1)
            if self.schedule is not None and self.schedule.out_of_time(step + 1):
                print(f"\ntime budget of {self.schedule.budget_s / 60:g} min reached at step "
                      f"{step + 1}", flush=True)
                break
        bar.close()
        self.steps_done = step + 1
        self.seconds = time.perf_counter() - start
        print(f"trained {self.steps_done} steps in {self.seconds:.0f} s "
              f"({self.seconds / self.steps_done:.2f} s/step)", flush=True)
        return self


def keep_better(
    out: Path,
    save_raw: Callable[[Path], None],
    save_ema: Callable[[Path], None],
    score: Callable[[str, Path], Any],
) -> tuple[str, dict[str, Any]]:
    """Save the raw and the EMA weights, score both (``score(name, directory)``: larger is
    better) and leave the better in ``out`` (the EMA on a tie); returns its name and the
    scores."""
    tmp = out.parent / (out.name + ".raw-tmp")
    save_raw(tmp)
    scores = {"raw": score("raw", tmp)}
    save_ema(out)
    scores["ema"] = score("ema", out)
    chosen = "ema" if scores["ema"] >= scores["raw"] else "raw"
    if chosen == "raw":
        save_raw(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return chosen, scores


def adherence(model: ReferenceModel, n: int = 100, chunk: int | None = None,
              **call_args: Any) -> float:
    """The digit classifier's accuracy on ``n`` images of ``model`` (balanced prompts, seeds
    0..n-1, generated ``chunk`` at a time) with ``call_args`` over its defaults."""
    prompts, labels = model.prompts(n)
    chunk = chunk or max(n, 1)
    images = torch.cat([
        model.generate(prompts[i : i + chunk], list(range(i, min(i + chunk, n))), **call_args)
        for i in range(0, n, chunk)
    ])
    pred = model.classifier().predict(images)
    return float((pred == torch.tensor(labels)).float().mean())


def run_record(script: str, argv: list[str] | None, args: argparse.Namespace,
               exclude: Iterable[str] = ("out",)) -> dict[str, Any]:
    """The ``command`` that ran and its ``args`` (paths as strings, ``exclude`` left out),
    for a run's training-info file."""
    words = sys.argv[1:] if argv is None else argv
    return {
        "command": training_command(script) + " " + " ".join(words),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                 if k not in set(exclude)},
    }


def save_info(path: Path, info: dict[str, Any], message: str) -> None:
    """Write a training's record (``training_info.json`` and kin) and say what was saved."""
    path.write_text(json.dumps(info, indent=2) + "\n")
    print(message)


def verdict(adh: float, min_adherence: float, what: str, start: float) -> int:
    """Print the adherence against its threshold and the elapsed time; the exit status (1
    below the threshold)."""
    print(f"ADHERENCE {what} ({'PASS' if adh >= min_adherence else 'FAIL'} vs {min_adherence})")
    elapsed = time.perf_counter() - start
    print(f"elapsed {elapsed:.0f} s ({elapsed / 60:.1f} min)")
    return 0 if adh >= min_adherence else 1


__all__ = ["EMA", "Loop", "Schedule", "add_arch_options", "adherence", "arch_of",
           "keep_better", "parser", "run_record", "verdict"]
