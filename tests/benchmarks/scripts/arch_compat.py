"""Which strategies apply to which architecture: every ``arch:<family>@tiny`` model against
every registered strategy (default parameters) and a few stacks, one generation each.

    OMP_NUM_THREADS=1 python tests/benchmarks/scripts/arch_compat.py [--models sd15 sdxl ...]
        [--stacks bf16 deepcache ...] [--steps 2] [--json OUT.json] [--time N]

For each (model, stack): parse the stack, ask every strategy's ``supports()``, apply the stack
to a clone of the model, generate one image (``--steps`` denoising steps; stacks with a
caching strategy run at least 6 so that the reuse path runs too; ``steps:n=...`` keeps its
own count) and check it is finite, in [0, 1] and of the model's shape (and, for stacks with
``compile``, that dynamo really compiled something: it silently runs eagerly past its
recompile limit). Prints a table of
``ok`` / ``unsupported`` / ``FAILED``, then every unsupported reason and every failure.
Nothing is timed (see the measurement engine for that); the exit status is 1 when a cell
failed.

``--time N`` first times each model's default call (batch 1, its default steps and size) N
times after a warm-up call and prints the median, on one thread (a rough figure: the
measurement engine is the place for real ones).

``prune-structured`` by default recovers with 300 training steps, which random-weight models
cannot do (no data); its column ``prune-structured:steps=0`` prunes without recovery.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

#: Stacks checked besides every registered strategy with its defaults.
EXTRA_STACKS = (
    "bf16+compile",
    "quant+compile",
    "prune-structured:steps=0",
    "scheduler:name=ddim",
    "scheduler:name=dpm-solver-3",
    "scheduler:name=unipc",
    "scheduler:name=euler",
    "scheduler:name=heun",
    "scheduler:name=deis",
    "scheduler:name=pndm",
)

#: Strategies for AR models only, or that stand alone: listed, never applied to diffusion.
SKIP = ("baseline",)

#: Steps of a run whose stack caches between steps (so the reuse path runs).
CACHE_STEPS = 6


def default_stacks() -> list[str]:
    """Every registered strategy (defaults), then :data:`EXTRA_STACKS`."""
    from strategies.core.registry import names

    return [n for n in names() if n not in SKIP] + list(EXTRA_STACKS)


def check(model: Any, spec: str, steps: int) -> tuple[str, str]:
    """(status, detail) of ``spec`` on ``model``: ``ok``, ``unsupported`` or ``failed``."""
    import torch

    from strategies.core.base import Strategy, StrategyError
    from strategies.core.registry import parse_stack

    try:
        stack = parse_stack(spec)
    except StrategyError as exc:
        return "unsupported", str(exc)
    for strategy in stack:
        try:
            reason = strategy.supports(model)
        except Exception as exc:  # noqa: BLE001 - a crash in supports() is a failure
            return "failed", f"{strategy.spec}.supports(): {type(exc).__name__}: {exc}"
        if reason:
            return "unsupported", f"{strategy.spec}: {reason}"
    names = [s.name for s in stack]
    args: dict[str, Any] = {}
    if "steps" not in names:
        caches = any(s.stage == Strategy.STAGE_CACHING for s in stack)
        args["num_inference_steps"] = max(steps, CACHE_STEPS) if caches else steps
    try:
        arm = stack.apply(model.clone())
        prompts, _ = arm.prompts(1)
        images = arm.generate(prompts, [0], **args)
    except Exception as exc:  # noqa: BLE001 - report every failure, keep going
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return "failed", f"{type(exc).__name__}: {first_line}{where}"
    size = model.call_args.get("height"), model.call_args.get("width")
    if images.shape != (1, 3, *size):
        expected = (1, 3, *size)
        return "failed", f"images of shape {tuple(images.shape)}, expected {expected}"
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        return "failed", "images not finite or outside [0, 1]"
    if "compile" in names and not arm.notes.get("cold", {}).get("compiles"):
        return "failed", "compiled arm ran eagerly: dynamo compiled nothing (recompile limit?)"
    return "ok", ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="families (default: every arch family)")
    parser.add_argument("--stacks", nargs="*",
                        help="stack specs (default: every strategy + extras; none: only --time)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps per generation")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--time", type=int, default=0, metavar="N",
                        help="time N default calls of each model first (0: do not)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from bench.models import arch
    from bench.models.registry import load_model

    families = args.models or [
        f for f in sorted(arch.FAMILIES) if arch.FAMILIES[f].kind != "autoregressive"
    ]
    stacks = default_stacks() if args.stacks is None else args.stacks
    results: dict[str, dict[str, tuple[str, str]]] = {}
    timings: dict[str, float] = {}
    for family in families:
        name = f"arch:{family}@tiny"
        model = load_model(name)
        if args.time:
            timings[name] = time_calls(model, args.time)
            print(f"{name:24s} default call {timings[name]:.3f} s (median of {args.time}; "
                  f"{model.call_args['num_inference_steps']} steps, "
                  f"{model.call_args['height']}x{model.call_args['width']})", flush=True)
        if not stacks:
            continue
        results[name] = {}
        for spec in stacks:
            start = time.perf_counter()
            status, detail = check(model, spec, args.steps)
            results[name][spec] = (status, detail)
            print(f"{name:24s} {spec:28s} {status:12s} {time.perf_counter() - start:6.1f}s "
                  f"{detail[:160]}", file=sys.stderr, flush=True)
        del model

    if results:
        print_table(results, stacks)
    if args.json:
        with open(args.json, "w") as fh:
            data = {m: {s: list(v) for s, v in row.items()} for m, row in results.items()}
            json.dump({"results": data, "default_call_s": timings}, fh, indent=1)
    failed = any(status == "failed" for row in results.values() for status, _ in row.values())
    return 1 if failed else 0


def time_calls(model: Any, n: int) -> float:
    """Median wall time (s) of ``n`` default calls of ``model`` (batch 1), after a warm-up."""
    import statistics

    prompts, _ = model.prompts(1)
    model.generate(prompts, [0])
    times = []
    for i in range(n):
        start = time.perf_counter()
        model.generate(prompts, [i])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(results: dict[str, dict[str, tuple[str, str]]], stacks: list[str]) -> None:
    """The compatibility table (stacks down, models across), then reasons and failures."""
    models = list(results)
    short = {m: m.removeprefix("arch:").removesuffix("@tiny") for m in models}
    width = max(len(s) for s in stacks)
    print("\n" + " " * width + "  " + "  ".join(f"{short[m]:12s}" for m in models))
    mark = {"ok": "ok", "unsupported": "unsupported", "failed": "FAILED"}
    for spec in stacks:
        cells = "  ".join(f"{mark[results[m][spec][0]]:12s}" for m in models)
        print(f"{spec:{width}s}  {cells}")
    for status, title in (("unsupported", "Unsupported, with the reason"), ("failed", "Failures")):
        lines = [
            f"  {short[m]} / {spec}: {results[m][spec][1]}"
            for spec in stacks
            for m in models
            if results[m][spec][0] == status
        ]
        if lines:
            print(f"\n{title}:")
            print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
