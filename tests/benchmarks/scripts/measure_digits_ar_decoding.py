"""Decoding speed of ``digits-ar`` in every mode: what the KV cache, batching and speculative
decoding buy, with the draft's acceptance rate. Measures, prints and saves the numbers.

Modes, each on the same prompts (balanced over 0..9), greedy:

* ``batched``: all images in one ``generate`` call (KV cache on);
* ``one-by-one``: one image per ``generate`` call (the model's default; the regime of
  speculative decoding, which transformers supports at batch size 1 only);
* ``no-kv-cache``: one by one, without the KV cache;
* ``speculative:k``: one by one, the shipped draft proposing k tokens per round;
* ``draft-alone``: the draft generating on its own (its cost per token, for the cost ratio).

Also checks that every greedy mode produced exactly the baseline's tokens.

Usage::

    OMP_NUM_THREADS=1 python tests/benchmarks/scripts/measure_digits_ar_decoding.py --out runs/ar-decoding.json

Takes a couple of minutes on one CPU thread; timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _time(fn, repeats: int) -> tuple[list[float], torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main() -> None:
    from bench.models import load_model
    from strategies import parse_stack

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", default="2,3,5,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model("digits-ar")
    prompts, _ = model.prompts(args.images)
    seeds = list(range(args.images))
    n = args.images
    results: dict[str, dict] = {}

    def record(name: str, times: list[float], images: torch.Tensor, reference, extra=None):
        median = statistics.median(times)
        results[name] = {
            "ms_per_image": 1000 * median / n,
            "tokens_per_s": 64 * n / median,
            "times_s": times,
            "identical_to_baseline": None if reference is None else bool(torch.equal(images, reference)),
            **(extra or {}),
        }
        print(f"{name:>16}: {results[name]['ms_per_image']:8.1f} ms/image "
              f"{results[name]['tokens_per_s']:8.0f} tokens/s  {extra or ''}", flush=True)

    times, base = _time(lambda: model.generate(prompts, seeds), args.repeats)
    record("one-by-one", times, base, None)
    times, out = _time(lambda: model.generate(prompts, seeds, batched=True), args.repeats)
    record("batched", times, out, base)
    uncached = parse_stack("no-kv-cache").apply(model.clone())
    times, out = _time(lambda: uncached.generate(prompts, seeds), args.repeats)
    record("no-kv-cache", times, out, base)
    for k in [int(x) for x in args.ks.split(",")]:
        spec = parse_stack(f"speculative:num_assistant_tokens={k}").apply(model.clone())
        times, out = _time(lambda spec=spec: spec.generate(prompts, seeds), args.repeats)
        decoding = spec.notes["decoding"]
        record(f"speculative:{k}", times, out, base, {
            "acceptance_rate": round(decoding["acceptance_rate"], 3),
            "token_acceptance": round(decoding["token_acceptance"], 3),
            "tokens_per_target_forward": round(decoding["tokens_per_target_forward"], 2),
        })
    draft_model = model.clone()
    draft_model.set_component("denoiser", model.default_draft())
    times, out = _time(lambda: draft_model.generate(prompts, seeds), args.repeats)
    record("draft-alone", times, out, None)
    ratio = results["one-by-one"]["ms_per_image"] / results["draft-alone"]["ms_per_image"]
    print(f"target/draft cost per token: {ratio:.1f}x")
    summary = {
        "images": n,
        "threads": args.threads,
        "target_params": sum(p.numel() for p in model.lm.parameters()),
        "draft_params": sum(p.numel() for p in model.default_draft().parameters()),
        "target_over_draft_cost": ratio,
        "modes": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
