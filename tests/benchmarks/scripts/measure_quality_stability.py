"""How stable are FID and KID at a given sample count? Measures, prints and saves the numbers.

For each sample count n (default 50, 100, 200, 297):

* real: n real digits drawn from the ``generator`` split (disjoint from the reference) with
  the digit composition of the benchmark's n prompts, scored against the 297 ``heldout``
  digits, over ``--real-seeds`` draws: the noise floor (``--unstratified``: plain random
  draws, to see what the class mix alone adds);
* generated: n images of ``--model`` (balanced prompts, seeds ``s * 10000 + i``), scored
  against the same reference, over ``--gen-seeds`` independent sets;
* noise: the same real draws with Gaussian noise of std 0.1 added, for scale.

Usage::

    python tests/benchmarks/scripts/measure_quality_stability.py --out runs/quality-stability.json

Takes a few minutes on 2 CPU cores (generation dominates). The README's quality section
quotes its output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _stats(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "cv": std / abs(mean) if mean else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--sizes", default="50,100,200,297")
    parser.add_argument("--real-seeds", type=int, default=10)
    parser.add_argument("--gen-seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's own")
    parser.add_argument("--unstratified", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tqdm.auto import tqdm

    from bench.models import load_model
    from bench.quality import noise_floor
    from bench.quality.distribution import classifier_scorer

    sizes = [int(s) for s in args.sizes.split(",")]
    model = load_model(args.model)
    if args.guidance is not None:
        model.call_args["guidance_scale"] = args.guidance
    classifier = model.classifier()
    reference = model.real_images("heldout")
    pool = model.real_images("generator")
    from bench.models.digits.data import load_split

    pool_labels = torch.from_numpy(load_split("generator").labels.copy())
    scorer = classifier_scorer(classifier, reference)
    n_max = max(sizes)

    t0 = time.perf_counter()
    generated = []
    for s in tqdm(range(args.gen_seeds), desc="generating"):
        prompts, _ = model.prompts(n_max)
        seeds = [s * 10000 + i for i in range(n_max)]
        chunks = [
            model.generate(prompts[i : i + args.batch_size], seeds[i : i + args.batch_size])
            for i in range(0, n_max, args.batch_size)
        ]
        generated.append(torch.cat(chunks))
    gen_s = time.perf_counter() - t0

    rows = []
    for n in sizes:
        labels = None if args.unstratified else model.prompts(n)[1]
        real = noise_floor.measure(
            scorer, pool, n, args.real_seeds, pool_labels=pool_labels, labels=labels
        )
        gen = [scorer.score(images[:n]) for images in generated]
        noisy = []
        for idx in noise_floor._draws(len(pool), n, args.real_seeds, pool_labels, labels):
            g = torch.Generator().manual_seed(int(idx[0]))
            x = pool[idx]
            noisy.append(scorer.score((x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)))
        row = {
            "n": n,
            "kid_subset_size": scorer.config.subset_size(n, len(reference)),
            "real_fid": {k: real["fid"][k] for k in ("mean", "std")},
            "real_kid": {k: real["kid"][k] for k in ("mean", "std")},
            "gen_fid": _stats([r["fid"] for r in gen]) if gen else None,
            "gen_kid": _stats([r["kid"] for r in gen]) if gen else None,
            "gen_kid_std": _stats([r["kid_std"] for r in gen]) if gen else None,
            "noise0.1_fid": _stats([r["fid"] for r in noisy]),
            "noise0.1_kid": _stats([r["kid"] for r in noisy]),
        }
        rows.append(row)

    print(
        f"model {args.model} {model.call_args}; reference: heldout ({len(reference)}); "
        f"generation {gen_s:.0f} s"
    )
    print(
        "| n | FID real->heldout (floor) | FID generated | FID real+noise 0.1 | "
        "KID real (floor) | KID generated | KID subset |"
    )
    print("|---|---|---|---|---|---|---|")
    def cell(value, digits):
        return "n/a" if value is None else f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"

    for r in rows:
        print(
            f"| {r['n']} | {cell(r['real_fid'], 2)} | {cell(r['gen_fid'], 2)} "
            f"| {cell(r['noise0.1_fid'], 2)} | {cell(r['real_kid'], 3)} "
            f"| {cell(r['gen_kid'], 3)} | {r['kid_subset_size']} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": args.model,
            "model_fingerprint": model.fingerprint(),
            "call_args": model.call_args,
            "real_seeds": args.real_seeds,
            "gen_seeds": args.gen_seeds,
            "stratified": not args.unstratified,
            "generation_s": gen_s,
            "rows": rows,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
