"""Realistic run directories for the history tests: records as the engine writes them
(raw per-round latencies, the paired speedup over the reference, quality with its
declarations, memory, energy, the environment with its commit), appended through
:func:`bench.core.results.append`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core import results, stats
from bench.core.metrics import METRICS

CPU = "Synthetic CPU 3000"
MACHINE_KEY = f"{CPU}, 2 cores"
SETTINGS = {"device": "cpu", "batch_size": 2, "steps": 25, "resolution": None,
            "quality_images": 16, "seed": 0, "load_dtype": "fp32", "threads": 1,
            "dtype": "float32"}
QUALITY = {"psnr": 31.0, "ssim": 0.95, "adherence": 0.9, "fid": 12.0, "kid": 0.5,
           "kid_std": 0.25}


def commit_hex(i: int) -> str:
    """A 40-digit commit name for the i-th synthetic commit."""
    return f"{i:040x}"


def make_run(folder: Path, *, commit: str, speedup: float = 2.0, ref_ms: float = 400.0,
             rounds: int = 12, noise: float = 0.02, seed: int = 0, psnr: float = 31.0,
             cpu: str = CPU, strategy: str = "steps:n=10", created: str | None = None,
             run_id: str | None = None) -> Path:
    """Write ``folder/results.jsonl``: the reference and one stack, timed in ``rounds``
    interleaved rounds at ``ref_ms`` per call and ``speedup`` times faster."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    drift = 1 + 0.1 * np.sin(np.arange(rounds))  # the machine's speed changes; rounds pair
    ref = ref_ms / 1000 * drift * np.exp(rng.normal(0, noise, rounds))
    cand = ref_ms / 1000 / speedup * drift * np.exp(rng.normal(0, noise, rounds))
    env = {"hostname": "h", "cpu": cpu, "cpu_count": 2, "git_commit": commit,
           "device": "cpu", "torch_threads": 1}
    run_id = run_id or f"run{seed:04d}{commit[:6]}"
    meta = {k: METRICS[k].as_dict() for k in QUALITY}
    for name, lat in (("baseline", ref), (strategy, cand)):
        summary = stats.summarize(lat * 1000)
        rec = {
            "run_id": run_id, "model": {"name": "digits-unet", "base_fingerprint": "f00d"},
            "strategy": name, "status": "ok", "settings": dict(SETTINGS), "environment": env,
            "schedule": {"name": "interleaved", "rounds": rounds, "block": 1},
            "timing": {"latencies_s": lat.tolist(), "rounds": list(range(rounds))},
            "stats": {"latency_ms": {"median": summary.median, "ci_low": summary.ci_low,
                                     "ci_high": summary.ci_high, "iqr": summary.iqr,
                                     "n": rounds, "ci_method": "order-statistics"}},
            "memory": {"peak_mb": 300.0 + seed % 3}, "energy": {"j_per_image": 1.5},
            "quality": dict(QUALITY, psnr="inf" if name == "baseline" else psnr),
            "quality_meta": meta,
        }
        if created:
            rec["created"] = created
        if name != "baseline":
            logs = stats.paired_log_ratios(ref.tolist(), list(range(rounds)), lat.tolist(),
                                           list(range(rounds)))
            rec["stats"]["speedup"] = stats.paired_speedup(logs).as_dict()
        results.append(folder, rec)
    return folder
