"""Strategies I (the article's techniques) on one model: one ``accelbench run``, one table.

    python tests/benchmarks/scripts/strategies_i.py [--model digits-unet] [--out runs/strategies-i]
        [--quality-images 100] [--iterations 5] [--extra STACK ...] [--table-only RUN_DIR]
        [--interleaved ROUNDS] [--interleaved-only]

Runs ``accelbench run`` (in a subprocess, ``OMP_NUM_THREADS=1`` unless set) over
quantization (int8 weight-only, int8 dynamic; fp8 is refused on CPUs and GPUs below compute
capability 8.9, and the refusal is recorded), magnitude pruning, structural pruning with
recovery, distillation, and fusion (trajectory split and weighted blend), then prints a table
of speed (median latency, speedup with its 95% CI and significance), fidelity to the
baseline (PSNR, SSIM), prompt adherence, FID where computed, the model size change (params
and MACs from the strategies' notes) and the one-off training cost with its break-even
number of images. Trained weights are cached, so a second run only measures.

On a shared machine the runner's per-stack timing windows see different loads; with
``--interleaved ROUNDS`` every stack is also timed round-robin (one call each per round) and
the speedup is the median paired ratio, which that drift cancels out of.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_STACKS = (
    "quant",
    "quant:mode=int8-dynamic",
    "quant:mode=fp8",
    "prune-magnitude",
    "prune-structured",
    "distill",
    "fusion",
    "fusion:weight=0.5",
    "fusion:split=0.25",
    "fusion:split=0.75",
    # The augmentation ablation of the two training strategies (their default is all three).
    "distill:augment=none",
    "prune-structured:augment=none",
)


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    if value is None:
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _size_change(notes: dict[str, Any]) -> tuple[float | None, float | None]:
    """(params ratio, MACs ratio) after/before, from whichever strategy changed the size."""
    for key in ("prune-structured", "distill", "fusion"):
        n = notes.get(key)
        if n and "params_ratio" in n:
            return n["params_ratio"], n["macs_ratio"]
    return None, None


def table(run_dir: Path) -> str:
    """The strategies-I table of a finished run directory."""
    from bench.core.results import iter_records, results_path

    rows = [(
        "strategy", "status", "ms/call", "speedup [95% CI]", "PSNR", "SSIM", "adher.", "FID",
        "params", "MACs", "train s", "hit", "break-even img",
    )]
    for r in iter_records(results_path(run_dir)):
        if r.get("status") != "ok":
            rows.append((r["strategy"], r.get("status", "?"), (r.get("error") or "")[:90],
                         *[""] * 10))
            continue
        lat = r["stats"]["latency_ms"]
        sp = r["stats"].get("speedup") or {}
        q = r.get("quality") or {}
        cold = r.get("cold") or {}
        params, macs = _size_change(r.get("notes") or {})
        speed = "1.00x (ref)"
        if sp:
            sig = "" if sp.get("significant", True) else " n.s."
            speed = (f"{_fmt(sp.get('ratio'), '.2f')}x [{_fmt(sp.get('ci_low'), '.2f')}-"
                     f"{_fmt(sp.get('ci_high'), '.2f')}]{sig}")
        be = cold.get("break_even_images")
        if "training_s" in cold and be is None:
            be_text = "never (not faster)"
        else:
            be_text = _fmt(be, ",.0f")
        rows.append((
            r["strategy"], "ok", _fmt(lat["median"], ".0f"), speed,
            _fmt(q.get("psnr"), ".1f"), _fmt(q.get("ssim"), ".3f"), _fmt(q.get("adherence"), ".2f"),
            _fmt(q.get("fid"), ".1f"), _fmt(params, ".2f"), _fmt(macs, ".2f"),
            _fmt(cold.get("training_s"), ".0f"),
            "" if "cache_hit" not in cold else ("yes" if cold["cache_hit"] else "no"),
            be_text,
        ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(
        "\nparams/MACs: after/before of the denoiser; train s: one-off training (cached runs "
        "report the original cost);\nbreak-even: training seconds / seconds saved per image "
        "against the baseline."
    )
    return "\n".join(lines)


def interleaved_speed(model_name: str, stacks: list[str], rounds: int, batch_size: int,
                      device: str = "cpu") -> str:
    """Latency of one generation call per stack, measured round-robin so that drift of a
    shared machine's load hits every stack alike; the speedup is the median over rounds of
    the paired ratio baseline / stack. Training strategies load their cached weights."""
    import statistics
    import time

    import torch

    from bench.models import ModelSpec, load_model
    from strategies import parse_stack

    base = load_model(ModelSpec(model_name, device=device))
    models = {"baseline": base}
    for spec in stacks:
        models[spec] = parse_stack(spec).apply(base.clone())
    prompts, _ = base.prompts(batch_size)
    seeds = list(range(batch_size))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model.generate(prompts, seeds)
        for r in range(rounds):
            order = list(models) if r % 2 == 0 else list(reversed(models))
            for name in order:
                start = time.perf_counter()
                models[name].generate(prompts, seeds)
                times[name].append(time.perf_counter() - start)
    lines = [f"interleaved: {rounds} rounds of one {batch_size}-image call per stack",
             f"{'strategy':<32} {'median ms':>10} {'speedup (paired)':>17}"]
    for name, t in times.items():
        ratios = [b / x for b, x in zip(times["baseline"], t, strict=True)]
        lines.append(f"{name:<32} {statistics.median(t) * 1000:>10.0f} "
                     f"{statistics.median(ratios):>16.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/strategies-i"))
    parser.add_argument("--quality-images", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--strategies", nargs="*", default=list(DEFAULT_STACKS),
                        help="stacks to run (default: all of strategies I)")
    parser.add_argument("--extra", nargs="*", default=[], help="more stacks (e.g. an ablation)")
    parser.add_argument("--table-only", type=Path, default=None,
                        help="print the table of an existing run directory and exit")
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="after the run, also time every stack round-robin for ROUNDS "
                             "rounds (robust to a shared machine's drifting load)")
    parser.add_argument("--interleaved-only", action="store_true",
                        help="only the round-robin timing (no accelbench run)")
    args = parser.parse_args(argv)
    if args.table_only is not None:
        print(table(args.table_only))
        return 0

    from strategies import StrategyError, parse_stack

    stacks = []
    for spec in [*args.strategies, *args.extra]:
        try:
            parse_stack(spec).check_device(args.device)
        except StrategyError as exc:  # e.g. fp8 on a CPU: say why, measure the rest
            print(f"refused: {exc}", flush=True)
            continue
        stacks.append(spec)
    if args.interleaved_only:
        print(interleaved_speed(args.model, stacks, max(1, args.interleaved), args.batch_size,
                                args.device))
        return 0
    cmd = [sys.executable, "-m", "bench.cli", "run", "--model", args.model,
           "--device", args.device, "--out", str(args.out),
           "--quality-images", str(args.quality_images), "--iterations", str(args.iterations),
           "--batch-size", str(args.batch_size), "--no-report"]
    for spec in ["baseline", *stacks]:
        cmd += ["-s", spec]
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    print("$", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, env=env)
    if (args.out / "results.jsonl").is_file():
        print()
        print(table(args.out))
    if args.interleaved:
        print()
        print(interleaved_speed(args.model, stacks, args.interleaved, args.batch_size, args.device))
    return code


if __name__ == "__main__":
    sys.exit(main())
