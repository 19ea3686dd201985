"""Record fields derived from what the engine measured: quality against the baseline's
images, per-step latency, and the memory and energy of one stack's own calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.core.metrics import METRICS
from bench.measure.harness import Timing
from bench.quality import adherence, fidelity, video


def score_quality(base: Any, images: Any, reference: Any, labels: Sequence[int] | None,
                  suite: Any = None, prompts: Sequence[str] = ()) -> dict[str, Any]:
    """Quality of ``images`` against ``reference`` (the unchanged model's images of the same
    prompts and seeds): PSNR and SSIM, adherence where the domain has a classifier, and the
    distribution metrics of ``suite``. Videos (N, T, C, H, W) are scored per frame (PSNR,
    SSIM), by their frame-to-frame change (temporal PSNR), by their domain's video scores
    and as whole clips (adherence, FID/KID: frames as channels). Random-weight models keep only the fidelity pair,
    labelled as numerical deviation. Returns ``quality``, ``quality_meta`` and
    ``quality_details``."""

    quality: dict[str, float] = {}
    details: dict[str, Any] = {}
    videos = video.is_video_batch(images)
    if reference is not None:
        frames, ref_frames = video.per_frame(images), video.per_frame(reference)
        quality["psnr"], identical, n = fidelity.psnr_detail(frames, ref_frames)
        unit = "frames" if videos else "images"
        details["psnr"] = {f"identical_{unit}": identical, unit: n,
                           "mean_over": f"{unit} that differ from the baseline's"}
        quality["ssim"] = fidelity.ssim(frames, ref_frames)
        if videos:
            details["fidelity_per"] = "frame"
            if images.shape[1] > 1:
                quality["temporal_psnr"], details["temporal_psnr"] = video.temporal_psnr(
                    images, reference)
    if getattr(base, "random_weights", False):
        reason = ("unavailable: random weights (an architecture model's images mean nothing; "
                  "PSNR/SSIM here measure numerical deviation from the same model's baseline)")
        details["fidelity"] = "numerical deviation from the same random-weight model's baseline"
        details["unavailable"] = {m: reason for m in ("adherence", "fid", "kid", "clip_score")}
    else:
        classifier = base.classifier()
        if classifier is not None and labels is not None:
            quality["adherence"] = adherence.adherence(
                classifier, video.frames_as_channels(images), labels)
            if videos and callable(getattr(base, "video_scores", None)):
                quality.update(base.video_scores(images, labels))
        if suite is not None:
            clips = None if reference is None else video.frames_as_channels(reference)
            extra, more = suite.score(video.frames_as_channels(images), clips, list(prompts),
                                      None if labels is None else list(labels))
            quality.update(extra)
            details.update(more)
    return {
        "quality": quality,
        "quality_meta": {name: METRICS[name].as_dict() for name in quality if name in METRICS},
        "quality_details": details,
    }


def median_step_ms(timing: Timing) -> float | None:
    """The median duration of one step across every timed call, in ms."""
    steps = sorted(d for it in timing.step_times_s for d in it)
    return steps[len(steps) // 2] * 1000 if steps else None


def memory_fields(result: Any, cuda_peak: float | None, local: bool, attributed: bool,
                  stack: dict[str, Any] | None = None) -> dict[str, Any]:
    """Memory of one stack: its own figures (``stack``, from :func:`bench.measure.footprint.stack_memory`:
    ``weights_mb``, ``added_mb``, ``activations_mb`` and ``peak_mb`` = weights + activations
    of one call made alone) and the process's views during its timed calls, which under
    interleaving include every other stack's weights: sampled RSS (``process_peak_rss_mb``),
    the kernel's high-water mark where it is the stack's own, and on GPUs the allocator's peak
    (reset before each of its blocks) and the device's and the process's NVML readings."""
    summary = result.summary
    mem: dict[str, Any] = dict(stack or {})
    mem["process_peak_rss_mb"] = summary.get("peak_rss_mb") if local else None
    if attributed:
        mem["rss_hwm_mb"] = None
        mem["note"] = ("process views cover every stack resident in an interleaved run; "
                       "weights_mb, activations_mb and peak_mb are this stack's own")
    else:
        mem["rss_hwm_mb"] = summary.get("rss_hwm_mb") if local else None
    if not local:
        mem["reason"] = "measured in a worker process: the sampler watches this process's memory"
        mem.setdefault("peak_mb", None)
    if cuda_peak is not None:
        mem["cuda_allocator_peak_mb"] = cuda_peak
        mem["device_peak_mb"] = summary.get("device_mem_peak_mb")
        mem["process_device_peak_mb"] = summary.get("process_mem_peak_mb")
    mem.setdefault("peak_mb", None)
    return mem


def energy_fields(result: Any) -> dict[str, Any]:
    """Energy of this stack's own timed calls: total, per image, images per kWh, and how it
    was measured (``unavailable`` with the reason, never zero)."""
    summary = result.summary
    if summary.get("energy_j") is None:
        out: dict[str, Any] = {
            "energy_j": None, "j_per_image": None, "images_per_kwh": None,
            "method": "unavailable",
            "reason": result.missing.get("energy", "this sampler reads no energy"),
        }
    else:
        keys = ("energy_j", "j_per_image", "images_per_kwh", "avg_power_w", "method", "window_s", "images")
        out = {k: summary.get(k) for k in keys}
        if summary.get("energy_note"):
            out["note"] = summary["energy_note"]
    out["scope"] = summary.get("energy_scope")
    out["windows"] = summary.get("windows")
    gpus = summary.get("gpus") or {}
    if gpus:
        out["per_device"] = {f"cuda:{k}": g.get("energy") for k, g in gpus.items()}
        host = summary.get("cpu_energy") or {}
        if host.get("energy_j") is not None:
            out["host"] = host
    return out


__all__ = ["energy_fields", "memory_fields", "median_step_ms", "score_quality"]
