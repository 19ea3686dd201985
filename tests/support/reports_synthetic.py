"""Synthetic run directories for the report tests and the report speed benchmark.

Records have the shape the runner writes (raw timings, statistics derived from them with
:mod:`bench.core.stats`, quality values with their declared directions, cold costs, memory,
energy, a PNG image grid and a sampler series file) and are written with
:func:`bench.core.results.append`. The numbers are made up; the schema is the real one.
No torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import results, stats
from bench.core.formats import slug
from bench.core.metrics import METRICS

BATCH = 8
STEPS = 25


def _grid_png(path: Path, rng: np.random.Generator, base: np.ndarray, noise: float) -> None:
    """Twenty 16x16 'digits' (the baseline's pattern plus noise), 4x upscaled, 10 per row."""
    from PIL import Image

    imgs = np.clip(base + rng.normal(0, noise, base.shape), 0, 1)
    scale, pad, ncol = 4, 1, 10
    h = w = 16 * scale
    nrow = 2
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncol)
        up = np.kron(img, np.ones((scale, scale)))
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w, :] = (up * 255).round().astype(np.uint8)[..., None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def _meta(*names: str) -> dict[str, dict[str, Any]]:
    return {n: METRICS[n].as_dict() for n in names}


def make_record(
    strategy: str,
    speed: float,
    degradation: float,
    *,
    run_dir: Path,
    rng: np.random.Generator,
    base_images: np.ndarray,
    baseline_latencies: list[float] | None,
    clock: list[float],
    model: str = "digits-unet",
    iterations: int = 8,
    with_series: bool = True,
    with_energy: bool = False,
    prompts: list[str] | None = None,
    status: str = "ok",
    error: str | None = None,
    training_s: float | None = None,
    with_quality: bool = True,
) -> dict[str, Any]:
    """One record as the runner writes it. ``speed`` is times faster than a 400 ms call;
    ``degradation`` in [0, 1] moves the quality away from the baseline's."""
    record: dict[str, Any] = {
        "run_id": "synthetic01",
        "created": "2026-11-29T01:00:00+00:00",
        "model": {"name": model, "kind": "diffusion-unet", "device": "cpu", "dtype": "float32",
                  "call_args": {"num_inference_steps": STEPS}, "params": 1_700_000, "applied": [strategy]},
        "strategy": strategy,
        "stack": [{"name": s.split(":")[0], "config": {}} for s in strategy.split("+")],
        "status": status,
        "error": error,
        "settings": {"device": "cpu", "batch_size": BATCH, "steps": STEPS, "quality_images": 20, "seed": 0},
        "config": {"model": model, "device": "cpu", "batch_size": BATCH, "timing": {"warmup": 2}},
        "environment": {"hostname": "bench-host", "os": "Linux", "python": "3.11", "cpu": "Synthetic CPU",
                        "cpu_count": 2, "packages": {"torch": "2.13.0", "diffusers": "0.42.1"},
                        "git_commit": "0123456789abcdef", "device": "cpu"},
    }
    if status != "ok":
        return record
    median = 0.4 / speed
    lat = list(median * (1 + np.abs(rng.normal(0, 0.03, iterations))))
    steps = int(round(STEPS / max(1.0, speed))) if "steps" in strategy else STEPS
    step_times = [list(np.full(steps, t / steps) * (1 + rng.normal(0, 0.02, steps))) for t in lat]
    t = clock[0]
    bounds = []
    warm = [median * 1.5, median * 1.05]
    t += sum(warm)
    for dt in lat:
        bounds.append([t, t + dt])
        t += dt
    window_start = clock[0]
    clock[0] = t + 5.0
    summary = stats.summarize([x * 1000 for x in lat])
    st: dict[str, Any] = {
        "latency_ms": summary.as_dict(),
        "ms_per_image": summary.median / BATCH,
        "images_per_s": BATCH / (summary.median / 1000),
        "step_ms_median": float(np.median(step_times) * 1000),
    }
    if baseline_latencies is not None:
        st["speedup"] = stats.speedup(baseline_latencies, lat).as_dict()
    record["timing"] = {"latencies_s": lat, "step_times_s": step_times, "bounds": bounds,
                        "warmup_s": warm, "first_call_s": warm[0]}
    record["stats"] = st
    cold = {"load_s": 0.4, "apply_s": 0.01 + 0.02 * rng.random(), "first_call_s": warm[0]}
    if training_s is not None:
        cold["training_s"] = training_s
        saved = 0.4 / BATCH - summary.median / 1000 / BATCH
        cold["break_even_images"] = training_s / saved if saved > 0 else None
    record["cold"] = cold
    peak = 300 + 40 * rng.random()
    record["memory"] = {"peak_rss_mb": peak, "peak_mb": peak}
    n_samples = max(3, int((t - window_start) / 0.05))
    ts = np.linspace(window_start, t, n_samples)
    if with_energy:
        power = 30 + 10 * rng.random(n_samples)
        energy = float(np.trapezoid(power, ts)) if hasattr(np, "trapezoid") else float(np.trapz(power, ts))
        record["energy"] = {"energy_j": energy, "j_per_image": energy / (BATCH * (iterations + 2)),
                            "avg_power_w": float(power.mean()), "method": "integrated power"}
    else:
        power = None
        record["energy"] = {"j_per_image": None, "method": "unavailable", "reason": "no power sensor readable"}
    record["sampler"] = {"source": "cpu", "interval_s": 0.05, "summary": {"peak_rss_mb": peak}, "missing": {}}
    if with_series:
        import pandas as pd

        cols = {"t": ts, "rss_mb": peak - 20 * np.exp(-np.linspace(0, 4, n_samples)),
                "cpu_percent": 180 + 15 * rng.random(n_samples)}
        if power is not None:
            cols["power_w"] = power
        rel = Path("series") / f"{slug(strategy)}.parquet"
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(cols).to_parquet(run_dir / rel)
        record["series_file"] = rel.as_posix()
    rel_img = Path("images") / f"{slug(strategy)}.png"
    _grid_png(run_dir / rel_img, rng, base_images, 0.02 + 0.4 * degradation if strategy != "baseline" else 0.0)
    record["images"] = rel_img.as_posix()
    if prompts is not None:
        record["image_prompts"] = prompts
        record["image_seeds"] = list(range(len(prompts)))
    if not with_quality:
        return record
    baseline = strategy == "baseline"
    q = {
        "psnr": math.inf if baseline else 40 - 25 * degradation + rng.normal(0, 0.5),
        "ssim": 1.0 if baseline else max(0.0, 1 - 0.8 * degradation),
        "adherence": 0.9 - 0.4 * degradation,
        "fid": 3.0 + 40 * degradation,
        "kid": 0.001 + 0.05 * degradation,
        "kid_std": 0.0005,
    }
    record["quality"] = q
    record["quality_noise_floor"] = {"fid": {"mean": 2.6, "std": 0.3}, "kid": {"mean": 0.0008, "std": 0.0004}}
    record["quality_details"] = {"unavailable": {"lpips": "no LPIPS weights on this machine"}}
    record["quality_meta"] = _meta("psnr", "ssim", "adherence", "fid", "kid")
    return record


def make_run(
    run_dir: Path,
    n_strategies: int = 6,
    *,
    seed: int = 0,
    slowdown: float = 1.0,
    with_series: bool = True,
    with_energy: bool = False,
    prompts: list[str] | None = None,
    extra: list[tuple[str, dict[str, Any]]] | None = None,
    model: str = "digits-unet",
    with_quality: bool = True,
) -> list[dict[str, Any]]:
    """Write a run directory with a baseline and ``n_strategies - 1`` other stacks (plus one
    unsupported and one failed), returning the records. ``slowdown`` scales every latency
    (to fake a regression between two runs)."""
    rng = np.random.default_rng(seed)
    run_dir = Path(run_dir)
    base_images = np.random.default_rng(1234).random((20, 16, 16)) ** 3
    clock = [1000.0]
    records = []
    names = ["baseline", "bf16", "steps:n=10", "scheduler:name=dpm-solver+steps:n=10", "compile", "deepcache:interval=3"]
    names += [f"steps:n={k}" for k in range(11, 11 + max(0, n_strategies - len(names)))]
    names = names[:n_strategies]
    baseline_lat = None
    for i, name in enumerate(names):
        speed = 1.0 if name == "baseline" else 1.0 + 0.25 * i + 0.3 * rng.random()
        degradation = 0.0 if name == "baseline" else min(1.0, 0.05 * i + 0.3 * rng.random())
        rec = make_record(name, speed / slowdown, degradation, run_dir=run_dir, rng=rng, base_images=base_images,
                          baseline_latencies=baseline_lat, clock=clock, with_series=with_series,
                          with_energy=with_energy, prompts=prompts, model=model,
                          training_s=120.0 if name.startswith("deepcache") else None,
                          with_quality=with_quality)
        if name == "baseline":
            baseline_lat = rec["timing"]["latencies_s"]
            rec["stats"]["speedup"] = stats.speedup(baseline_lat, baseline_lat).as_dict()
        results.append(run_dir, rec)
        records.append(rec)
    tail = extra if extra is not None else [
        ("int8-dynamic", {"status": "unsupported", "error": "torchao int8 needs a CUDA device here"}),
        ("prune:ratio=0.5", {"status": "failed", "error": "RuntimeError: GroupNorm groups <3> do not divide channels"}),
    ]
    for name, kw in tail:
        rec = make_record(name, 1.0, 0.0, run_dir=run_dir, rng=rng, base_images=base_images,
                          baseline_latencies=baseline_lat, clock=clock, model=model, **kw)
        results.append(run_dir, rec)
        records.append(rec)
    return records
