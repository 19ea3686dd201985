"""Quality of the consistency-distilled student at 1, 2, 4 and 8 steps (no timing).

    python tests/benchmarks/scripts/consistency_steps.py [--model digits-unet]
        [--spec consistency] [--steps 1,2,4,8] [--images 200] [--no-ddim] [--out FILE.json]

For each step count: the student (``<spec>,steps=<n>``, trained once through the strategy's
weight cache, so the first call trains and later ones only load), and, for comparison, the
teacher itself sampled with DDIM at the same number of steps (``steps:n=<n>``, guidance
kept). Every row is scored on the same ``--images`` prompts and seeds the runner uses
(balanced digits, seeds 0..n-1): prompt adherence (the digit classifier's accuracy), FID and
KID against the held-out real digits (the classifier's features), PSNR and SSIM against the
teacher's own images (its default 25 steps with guidance), plus the baseline's FID and the
noise floor (FID between real draws at the same number of images: mean and std). A
student's FID is "inside the baseline's noise band" when it differs from the baseline's by
less than twice the floor's std.

Training, when not cached, runs on one thread (``--threads``) and its wall time is printed
from the strategy's notes; on a shared machine it is indicative only. Quality figures are
deterministic for fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _score(suite: Any, classifier: Any, images: Any, reference: Any, prompts: list[str],
           labels: list[int]) -> dict[str, float]:
    from bench.quality.adherence import adherence
    from bench.quality.fidelity import psnr, ssim

    values, _ = suite.score(images, reference, prompts)
    row = {
        "adherence": adherence(classifier, images, labels),
        "fid": values.get("fid"),
        "kid": values.get("kid"),
    }
    if reference is not None:
        row["psnr"] = psnr(images, reference)
        row["ssim"] = ssim(images, reference)
    return row


def _generate(model: Any, prompts: list[str], seeds: list[int], batch: int = 50) -> Any:
    import torch

    chunks = [model.generate(prompts[i : i + batch], seeds[i : i + batch])
              for i in range(0, len(prompts), batch)]
    return torch.cat(chunks)


def measure(model_name: str, spec: str, steps: list[int], n_images: int,
            ddim: bool = True) -> dict[str, Any]:
    """Baseline, noise floor and one row per (method, step count)."""
    from bench.models import load_model
    from bench.quality.suite import QualitySuite
    from strategies import parse_stack

    base = load_model(model_name)
    prompts, labels = base.prompts(n_images)
    seeds = list(range(n_images))
    classifier = base.classifier()
    suite = QualitySuite(base)
    reference = _generate(base, prompts, seeds)
    baseline = _score(suite, classifier, reference, None, prompts, labels)
    floor = suite.noise_floor(n_images) or {}
    result: dict[str, Any] = {
        "model": model_name,
        "images": n_images,
        "baseline": {"steps": base.steps, "guidance": base.call_args.get("guidance_scale"),
                     **baseline},
        "noise_floor": {"fid_mean": (floor.get("fid") or {}).get("mean"),
                        "fid_std": (floor.get("fid") or {}).get("std")},
        "rows": [],
    }
    for n in steps:
        stacks = [f"{spec},steps={n}" if ":" in spec else f"{spec}:steps={n}"]
        if ddim:
            stacks.append(f"steps:n={n}")
        for stack_spec in stacks:
            start = time.perf_counter()
            model = parse_stack(stack_spec).apply(base.clone())
            applied_s = time.perf_counter() - start
            calls: list[int] = []
            model.generate(prompts[:1], seeds[:1], step_callback=calls.append)
            images = _generate(model, prompts, seeds)
            row = {"stack": stack_spec, "steps": n, "step_callbacks": len(calls),
                   "guidance": model.call_args.get("guidance_scale"),
                   **_score(suite, classifier, images, reference, prompts, labels)}
            notes = model.notes.get("consistency")
            if notes:
                training = notes["training"]
                row.update({"training_s": training["training_s"], "train_steps": training["steps"],
                            "cache_hit": training["cache_hit"], "timesteps": notes["timesteps"],
                            "apply_s": applied_s})
            result["rows"].append(row)
            print(_line(row, result), flush=True)
    return result


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _line(row: dict[str, Any], result: dict[str, Any]) -> str:
    band = result["noise_floor"]["fid_std"]
    fid, base_fid = row.get("fid"), result["baseline"]["fid"]
    inside = ""
    if None not in (fid, base_fid, band):
        inside = "inside" if abs(fid - base_fid) < 2 * band else "outside"
    return (f"{row['stack']:<40} steps={row['steps']} adherence={row['adherence']:.3f} "
            f"FID={_fmt(fid, '.2f')} ({inside} band) KID={_fmt(row.get('kid'), '.4f')} "
            f"PSNR={_fmt(row.get('psnr'), '.1f')} SSIM={_fmt(row.get('ssim'), '.3f')}"
            + (f" train={row['training_s']:.0f}s/{row['train_steps']} steps"
               f"{' (cached)' if row['cache_hit'] else ''}" if "training_s" in row else ""))


def table(result: dict[str, Any]) -> str:
    """The result as a text table."""
    b, f = result["baseline"], result["noise_floor"]
    lines = [
        f"{result['model']}, {result['images']} images; baseline: {b['steps']} DDIM steps, "
        f"guidance {b['guidance']}: adherence {b['adherence']:.3f}, FID {_fmt(b['fid'], '.2f')}; "
        f"noise floor at {result['images']} images: FID {_fmt(f['fid_mean'], '.2f')} "
        f"+- {_fmt(f['fid_std'], '.2f')} (band: |FID - baseline| < {_fmt(2 * (f['fid_std'] or 0), '.2f')})",
    ]
    lines += [_line(row, result) for row in result["rows"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--spec", default="consistency",
                        help="the consistency strategy spec, without steps=")
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--no-ddim", action="store_true",
                        help="skip the teacher-with-fewer-DDIM-steps comparison rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    result = measure(args.model, args.spec, [int(s) for s in args.steps.split(",")],
                     args.images, ddim=not args.no_ddim)
    print()
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
