"""What the decoding strategies buy on the autoregressive digits models: baseline against
``zipar``, ``sjd`` and ``speculative``, timed in alternation, with quality on 200 sampled images.

For each model (``digits-ar`` and ``digits-ar-large`` by default) every stack generates the
same 200 quality images (prompts balanced over 0..9, seeds 0..199) in batches of the
benchmark's default size (8), and these calls are the timed ones: batch i of every stack runs
in round i, the stacks in one order and then reversed in the next round, so a change of load
hits all stacks alike. Reported per stack: median ms per batch, the speedup (median of the
per-round ratios baseline / stack, with its 25-75% range), forward passes per image, tokens
per forward pass, acceptance where it applies, prompt adherence (the digit classifier, as the
engine scores it) and FID against the held-out digits with the noise floor of
:mod:`bench.quality.noise_floor` (the spread of FID between real samples of 200 digits): a
stack's FID is "in band" when it lies within two noise-floor standard deviations of the
baseline's. Greedy exactness of ``sjd`` and ``speculative`` is checked on 16 images, and the
cost of one target and one draft forward pass (batch 8, one token each) is timed to give the
draft's cost ratio.

Usage::

    OMP_NUM_THREADS=1 python tests/benchmarks/scripts/ar_decoding.py --out runs/ar-decoding.json

About 15 minutes on one CPU thread. Timings on a shared machine are provisional; quality
figures are deterministic for the fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DEFAULT_STACKS = ("zipar:window=2", "zipar:window=3", "zipar:window=4", "sjd:block=2",
                  "sjd:block=4", "speculative:num_assistant_tokens=2",
                  "speculative:num_assistant_tokens=4")


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


@torch.no_grad()
def forward_cost_ms(module: torch.nn.Module, batch: int = 8, context: int = 40,
                    repeats: int = 30) -> float:
    """Median ms of one cached forward pass of ``batch`` one-token queries."""
    from transformers import DynamicCache

    from bench.models.ar_decoding import cache_keyword

    kw = cache_keyword(module)
    times = []
    ids = torch.randint(0, 17, (batch, context))
    for _ in range(repeats + 3):
        cache = DynamicCache()
        module(input_ids=ids, use_cache=True, **{kw: cache})
        step = torch.randint(0, 17, (batch, 1))
        t0 = time.perf_counter()
        module(input_ids=step, use_cache=True, **{kw: cache})
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[3:])


def measure_model(name: str, stacks: list[str], n: int, batch: int) -> dict:
    from bench.models import load_model
    from bench.quality import noise_floor
    from bench.quality.adherence import adherence
    from bench.quality.distribution import classifier_scorer
    from strategies import parse_stack

    model = load_model(name)
    prompts, labels = model.prompts(n)
    seeds = list(range(n))
    arms = {"baseline": model.clone()}
    for spec in stacks:
        arms[spec] = parse_stack(spec).apply(model.clone())
    for arm in arms.values():  # warm-up
        arm.generate(prompts[:batch], seeds[:batch])
        arm.notes.pop("decoding", None)
    times: dict[str, list[float]] = {k: [] for k in arms}
    images: dict[str, list[torch.Tensor]] = {k: [] for k in arms}
    order = list(arms)
    for r, start in enumerate(range(0, n, batch)):
        p, s = prompts[start:start + batch], seeds[start:start + batch]
        for key in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            out = arms[key].generate(p, s)
            times[key].append(time.perf_counter() - t0)
            images[key].append(out)
    scorer = classifier_scorer(model.classifier(), model.real_images("heldout"))
    floor = noise_floor.for_model(model, scorer, n)
    floor_std = floor["fid"]["std"]
    out: dict = {"model": name, "images": n, "batch_size": batch,
                 "noise_floor_fid": {"mean": floor["fid"]["mean"], "std": floor_std}, "stacks": {}}
    base_times = times["baseline"]
    for key, arm in arms.items():
        imgs = torch.cat(images[key])
        ratios = [b / t for b, t in zip(base_times, times[key], strict=True)]
        lo, med, hi = _quartiles(ratios)
        decoding = arm.notes.get("decoding", {})
        out["stacks"][key] = {
            "ms_per_batch": 1000 * statistics.median(times[key]),
            "speedup": med, "speedup_iqr": [lo, hi],
            "forward_passes_per_image": decoding.get("forward_passes_per_image"),
            "tokens_per_forward": decoding.get("tokens_per_forward"),
            "acceptance_rate": decoding.get("acceptance_rate"),
            "token_acceptance": decoding.get("token_acceptance"),
            "acceptance_per_iteration": decoding.get("acceptance_per_iteration"),
            "draft_forward_passes_per_image": (decoding["draft_forward_passes"] / n
                                               if decoding.get("draft_forward_passes") else None),
            "adherence": adherence(model.classifier(), imgs, labels),
            "fid": scorer.score(imgs)["fid"],
            "notes": {k: v for k, v in arm.notes.items() if k in ("speculative", "zipar", "sjd")},
        }
    base_fid = out["stacks"]["baseline"]["fid"]
    for entry in out["stacks"].values():
        entry["fid_in_band"] = abs(entry["fid"] - base_fid) <= 2 * floor_std
    # Greedy exactness of the exact decoders.
    greedy = model.generate(prompts[:16], seeds[:16], do_sample=False)
    for key, arm in arms.items():
        if key.startswith(("sjd", "speculative")):
            out["stacks"][key]["greedy_identical"] = bool(
                torch.equal(greedy, torch.cat([arm.generate(prompts[i:i + batch], seeds[i:i + batch],
                                                            do_sample=False)
                                               for i in range(0, 16, batch)])))
    try:
        draft = model.default_draft()
        target_ms, draft_ms = forward_cost_ms(model.lm), forward_cost_ms(draft)
        out["forward_ms"] = {"target": target_ms, "draft": draft_ms,
                             "target_over_draft": target_ms / draft_ms}
    except (FileNotFoundError, NotImplementedError) as exc:
        out["forward_ms"] = {"error": str(exc)}
    return out


def print_model(result: dict) -> None:
    floor = result["noise_floor_fid"]
    print(f"\n== {result['model']}: {result['images']} sampled images, batch "
          f"{result['batch_size']}; FID noise floor {floor['mean']:.2f} +- {floor['std']:.2f}")
    if "target_over_draft" in result["forward_ms"]:
        f = result["forward_ms"]
        print(f"   one forward pass (batch 8, 1 token): target {f['target']:.1f} ms, draft "
              f"{f['draft']:.1f} ms, ratio {f['target_over_draft']:.1f}")
    print(f"   {'stack':38s} {'ms/batch':>9s} {'speedup':>8s} {'[IQR]':>13s} {'fwd/img':>8s} "
          f"{'tok/fwd':>7s} {'accept':>7s} {'adher.':>6s} {'FID':>6s} band greedy=")
    for key, e in result["stacks"].items():
        acc = f"{e['acceptance_rate']:.2f}" if e["acceptance_rate"] is not None else "-"
        greedy = {True: "yes", False: "NO"}.get(e.get("greedy_identical"), "-")
        print(f"   {key:38s} {e['ms_per_batch']:9.0f} {e['speedup']:7.2f}x "
              f"[{e['speedup_iqr'][0]:.2f}-{e['speedup_iqr'][1]:.2f}] "
              f"{e['forward_passes_per_image']:8.1f} {e['tokens_per_forward']:7.2f} {acc:>7s} "
              f"{e['adherence']:6.3f} {e['fid']:6.2f} {'in' if e['fid_in_band'] else 'OUT':>4s} "
              f"{greedy}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="digits-ar,digits-ar-large")
    parser.add_argument("--stacks", nargs="*", default=list(DEFAULT_STACKS),
                        help="stack specs to compare with the baseline")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stacks = [s for s in args.stacks if s.strip()]
    results = []
    for name in args.models.split(","):
        start = time.perf_counter()
        result = measure_model(name.strip(), stacks, args.images, args.batch_size)
        result["wall_s"] = time.perf_counter() - start
        print_model(result)
        results.append(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
