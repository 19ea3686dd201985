"""One run: load a model, compute the baseline once, then measure and score every stack.

The flow follows the design: for each strategy stack, apply to a fresh copy of the model,
warm up, time the hot loop while a sampler runs in the background, generate the quality
images apart from the timed loop, score them against the baseline's, and append a record.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import baseline_cache, environment, results, stats
from bench.harness import Timing, TimingConfig, measure
from bench.models.base import ModelSpec, ReferenceModel
from bench.quality.base import METRICS
from bench.quality.config import QualityConfig
from bench.samplers import make_sampler
from strategies import StrategyError, StrategyStack, parse_stack

#: Images shown in each stack's grid (the first quality images: same prompts and seeds).
GRID_IMAGES = 20

DEFAULT_STRATEGIES = ("baseline", "bf16", "steps:n=10", "scheduler:name=dpm-solver+steps:n=10")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved with every record.

    Attributes:
        model: registry name or ``hf:<id or path>``.
        strategies: stack specs; the baseline is always measured first.
        device: ``cpu``, ``cuda``, ``cuda:1``...
        batch_size: images per generation call in the timed loop.
        steps: denoising steps of the baseline (None: the model's default).
        timing: warm-up and stop rule.
        quality_images: images generated (apart from the timed loop) for quality metrics.
        seed: seed of the first image; image i uses seed + i.
        sample_interval_s: sampler polling interval.
        out_dir: the run directory.
        quality: settings of the distribution and hub quality metrics (KID subsets, noise
            floor draws, real images for hub models, CLIP and LPIPS backbones).
        resolution: (height, width) to generate at; None: the model's own. Hub pipelines
            take any multiple of 8; an embedded model only its native size (anything else
            is refused with the reason, see :func:`bench.models.registry.check_resolution`).
    """

    model: str = "digits-unet"
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    device: str = "cpu"
    batch_size: int = 8
    steps: int | None = None
    timing: TimingConfig = field(default_factory=TimingConfig)
    quality_images: int = 200
    seed: int = 0
    sample_interval_s: float = 0.05
    out_dir: Path = Path("runs/latest")
    trust_remote_code: bool = False
    allow_download: bool = False
    use_cache: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)
    resolution: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.quality_images < 0:
            raise ValueError(f"quality images must be >= 0, got {self.quality_images}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


def parse_stacks(specs: tuple[str, ...] | list[str], device: str) -> list[StrategyStack]:
    """Parse and check every stack before anything loads; the baseline goes first, once."""
    stacks = [parse_stack(s) for s in specs]
    for stack in stacks:
        stack.check_device(device)
    baseline = [s for s in stacks if s.is_baseline] or [parse_stack("baseline")]
    others = []
    seen = set()
    for s in stacks:
        if not s.is_baseline and s.spec not in seen:
            seen.add(s.spec)
            others.append(s)
    return [baseline[0], *others]


Progress = Callable[[str], None]


class Runner:
    """Runs a :class:`RunConfig`, appending one record per stack to the run directory."""

    def __init__(self, config: RunConfig, show_progress: bool = True, log: Progress | None = None):
        self.config = config
        self.show_progress = show_progress
        self.log = log or (lambda msg: None)
        self.run_id = uuid.uuid4().hex[:12]
        self.records: list[dict[str, Any]] = []
        #: The baseline's median timed again after all stacks, against the first (see
        #: :meth:`_recheck_baseline`); None until a run with more than the baseline ends.
        self.baseline_drift: dict[str, Any] | None = None
        self._baseline_latencies: list[float] | None = None

    # -- public ------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Measure every stack; returns the records (also appended to results.jsonl)."""
        cfg = self.config
        stacks = parse_stacks(cfg.strategies, cfg.device)
        out = Path(cfg.out_dir)
        (out / "images").mkdir(parents=True, exist_ok=True)

        from bench.models.registry import load_model

        self.log(f"loading {cfg.model} on {cfg.device}")
        t0 = time.perf_counter()
        base = load_model(
            ModelSpec(
                cfg.model,
                device=cfg.device,
                trust_remote_code=cfg.trust_remote_code,
                allow_download=cfg.allow_download,
            )
        )
        load_s = time.perf_counter() - t0
        if cfg.steps is not None:
            if "num_inference_steps" not in base.call_args:
                raise StrategyError(f"{base.name} has no denoising step count to set")
            base.call_args["num_inference_steps"] = cfg.steps
        if cfg.resolution is not None:
            from bench.models.registry import check_resolution

            check_resolution(cfg.model, cfg.resolution)
            if cfg.model.startswith("hf:"):
                base.call_args["height"], base.call_args["width"] = cfg.resolution

        timed_prompts, _ = base.prompts(cfg.batch_size)
        timed_seeds = [cfg.seed + i for i in range(cfg.batch_size)]
        q_prompts, q_labels = base.prompts(cfg.quality_images)
        q_seeds = [cfg.seed + i for i in range(cfg.quality_images)]
        reference = self._baseline_images(base, q_prompts, q_seeds)
        classifier = base.classifier()

        for stack in stacks:
            self.log(f"[{stack.spec}] applying")
            record = self._measure_stack(
                base, stack, load_s, timed_prompts, timed_seeds,
                q_prompts, q_labels, q_seeds, reference, classifier,
            )
            results.append(out, record)
            self.records.append(record)
        if len(stacks) > 1 and self._baseline_latencies:
            self.baseline_drift = self._recheck_baseline(base, timed_prompts, timed_seeds)
        return self.records

    def _recheck_baseline(self, base: ReferenceModel, prompts, seeds) -> dict[str, Any]:
        """Time the baseline again after every stack: if the machine's speed drifted during
        the run (other load, thermal throttling), every speedup is off by about as much.

        The result is saved as ``run.json`` in the run directory and returned.
        """
        import json

        model = base.clone()

        def call(step_callback):
            with torch.inference_mode():
                return model.generate(prompts, seeds, step_callback=step_callback)

        self.log("[baseline] timing again to check for drift")
        again = measure(call, torch.device(self.config.device), self.config.timing)
        first = stats.summarize(self._baseline_latencies).median
        last = stats.summarize(again.latencies_s).median
        drift = {
            "first_ms": first * 1000,
            "last_ms": last * 1000,
            "ratio": last / first,
            "p_value": stats.mann_whitney_p(self._baseline_latencies, again.latencies_s),
            "latencies_s": again.latencies_s,
        }
        summary = {"run_id": self.run_id, "baseline_drift": drift}
        (Path(self.config.out_dir) / "run.json").write_text(json.dumps(summary, indent=1))
        return drift

    # -- internals ---------------------------------------------------------------------
    def _baseline_images(self, base: ReferenceModel, prompts, seeds) -> torch.Tensor | None:
        if not prompts:
            return None
        key = baseline_cache.key(base, prompts, seeds)
        if self.config.use_cache:
            cached = baseline_cache.get(key)
            if cached is not None:
                self.log("baseline images: from cache")
                return cached
        self.log(f"baseline images: generating {len(prompts)}")
        images = self._generate_batched(base, prompts, seeds, "baseline images")
        if self.config.use_cache:
            baseline_cache.put(key, images)
        return images

    def _generate_batched(self, model: ReferenceModel, prompts, seeds, desc: str) -> torch.Tensor:
        from tqdm.auto import tqdm

        b = self.config.batch_size
        chunks = []
        with tqdm(total=len(prompts), desc=desc, unit="img", disable=not self.show_progress, leave=False) as bar:
            for i in range(0, len(prompts), b):
                chunks.append(model.generate(prompts[i : i + b], seeds[i : i + b]))
                bar.update(len(chunks[-1]))
        return torch.cat(chunks)

    def _base_record(self, base: ReferenceModel, stack: StrategyStack) -> dict[str, Any]:
        cfg = self.config
        return {
            "run_id": self.run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": base.describe(),
            "strategy": stack.spec,
            "stack": stack.config(),
            "status": "ok",
            "error": None,
            "settings": {
                "device": cfg.device,
                "batch_size": cfg.batch_size,
                "steps": base.steps,
                "resolution": list(cfg.resolution) if cfg.resolution else None,
                "quality_images": cfg.quality_images,
                "seed": cfg.seed,
            },
            "config": cfg.as_dict(),
            "environment": environment.capture(cfg.device),
        }

    def _measure_stack(
        self, base, stack, load_s, timed_prompts, timed_seeds,
        q_prompts, q_labels, q_seeds, reference, classifier,
    ) -> dict[str, Any]:
        record = self._base_record(base, stack)
        try:
            reason = None
            for s in stack:
                reason = s.supports(base)
                if reason:
                    record.update(status="unsupported", error=f"{s.spec}: {reason}")
                    self.log(f"[{stack.spec}] not applicable: {reason}")
                    return record
            t0 = time.perf_counter()
            model = stack.apply(base.clone())
            apply_s = time.perf_counter() - t0
            record["model"] = model.describe()
            record["settings"]["steps"] = model.steps
            record["settings"]["dtype"] = str(model.dtype).replace("torch.", "")
            record["notes"] = model.notes

            timing, sampler_result, cuda_peak = self._time(model, stack, timed_prompts, timed_seeds)
            record["timing"] = timing.as_dict()
            record["stats"] = self._stats(timing)
            self._decoding_stats(record, model)
            record["cold"] = {
                "load_s": load_s,
                "apply_s": apply_s,
                "first_call_s": timing.first_call_s,
                **{k: v for k, v in model.notes.get("cold", {}).items()},
            }
            self._break_even(record)
            record["sampler"] = sampler_result.as_dict()
            record["series_file"] = self._save_series(stack, sampler_result)
            record["memory"] = self._memory(sampler_result, cuda_peak)
            record["energy"] = self._energy(sampler_result)
            if q_prompts:
                images = reference if stack.is_baseline else self._generate_batched(
                    model, q_prompts, q_seeds, f"quality {stack.spec}"
                )
                record["images"] = self._save_images(stack, images)
                record["image_prompts"] = list(q_prompts[:GRID_IMAGES])
                record["image_seeds"] = list(q_seeds[:GRID_IMAGES])
                record.update(
                    self._quality(base, images, reference, q_prompts, q_labels, classifier)
                )
        except StrategyError as exc:
            record.update(status="unsupported", error=str(exc))
            self.log(f"[{stack.spec}] not applicable: {exc}")
        except Exception as exc:  # one failing stack must not end the run
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            record["traceback"] = traceback.format_exc()
            self.log(f"[{stack.spec}] failed: {type(exc).__name__}: {exc}")
        return record

    def _time(self, model, stack, prompts, seeds) -> tuple[Timing, Any, float | None]:
        from tqdm.auto import tqdm

        cfg = self.config
        device = torch.device(cfg.device)
        bar = tqdm(
            desc=f"{stack.spec:>24}",
            unit="it",
            total=cfg.timing.warmup + cfg.timing.min_iterations,
            disable=not self.show_progress,
            leave=False,
        )

        def progress(phase: str, i: int) -> None:
            bar.set_postfix_str(phase)
            bar.update(1)

        def call(step_callback):
            with torch.inference_mode():
                return model.generate(prompts, seeds, step_callback=step_callback)

        gpus = _model_gpus(model, device)
        for g in gpus:
            torch.cuda.reset_peak_memory_stats(g)
        sampler = make_sampler(cfg.device, cfg.sample_interval_s, gpus=gpus or None)
        try:
            with sampler:
                timing = measure(call, device, cfg.timing, progress)
        finally:
            bar.close()
        cuda_peak = sum(torch.cuda.max_memory_allocated(g) for g in gpus) / 2**20 if gpus else None
        if stack.is_baseline:
            self._baseline_latencies = timing.latencies_s
        # Energy and peaks over the timed loop only (the sampler also saw the warm-up).
        result = sampler.result(
            window=timing.window, images=len(timing.latencies_s) * len(prompts), bounds=timing.bounds
        )
        return timing, result, cuda_peak

    def _save_series(self, stack: StrategyStack, sampler_result) -> str | None:
        """Write the raw sampled series; returns its path inside the run dir (None on failure)."""
        from bench.images import slug
        from bench.samplers import series

        try:
            path = series.write(
                sampler_result,
                Path(self.config.out_dir) / "series" / slug(stack.spec),
                extra={"run_id": self.run_id, "strategy": stack.spec},
            )
        except Exception as exc:  # the timeline is a nice-to-have; the record is not
            self.log(f"[{stack.spec}] raw series not saved: {type(exc).__name__}: {exc}")
            return None
        return str(path.relative_to(self.config.out_dir))

    def _stats(self, timing: Timing) -> dict[str, Any]:
        b = self.config.batch_size
        ms = [t * 1000 for t in timing.latencies_s]
        summary = stats.summarize(ms)
        out: dict[str, Any] = {
            "latency_ms": summary.as_dict(),
            "ms_per_image": summary.median / b,
            "images_per_s": b / (summary.median / 1000),
            "step_ms_median": _median_step_ms(timing),
        }
        if self._baseline_latencies is not None:
            out["speedup"] = stats.speedup(self._baseline_latencies, timing.latencies_s).as_dict()
        return out

    @staticmethod
    def _decoding_stats(record: dict[str, Any], model: ReferenceModel) -> None:
        """Token rates of models that generate tokens: tokens/s from the ``tokens_per_image``
        the model describes, and the decoding counts it keeps in ``notes["decoding"]`` over the
        calls so far (warm-up and timed loop): tokens per target forward pass and, under
        speculative decoding, the share of draft tokens accepted (``acceptance_rate``) and the
        probability that a checked draft token is accepted (``token_acceptance``)."""
        per_image = record["model"].get("tokens_per_image")
        if per_image:
            record["stats"]["tokens_per_s"] = per_image * record["stats"]["images_per_s"]
        decoding = model.notes.get("decoding") or {}
        for key in ("tokens_per_target_forward", "acceptance_rate", "token_acceptance"):
            if decoding.get(key) is not None:
                record["stats"][key] = decoding[key]

    def _break_even(self, record: dict[str, Any]) -> None:
        """Images after which a training strategy's one-off cost is paid back."""
        cold = record["cold"]
        training_s = cold.get("training_s")
        if not training_s or self._baseline_latencies is None:
            return
        base_per_img = stats.summarize(self._baseline_latencies).median / self.config.batch_size
        per_img = record["stats"]["ms_per_image"] / 1000
        saved = base_per_img - per_img
        cold["break_even_images"] = training_s / saved if saved > 0 else None

    @staticmethod
    def _memory(sampler_result, cuda_peak: float | None) -> dict[str, Any]:
        """Peak memory during the timed loop: sampled RSS, the kernel's RSS high-water mark
        (warm-up included), and on GPUs the allocator's, device and process views."""
        summary = sampler_result.summary
        mem: dict[str, Any] = {
            "peak_rss_mb": summary.get("peak_rss_mb"),
            "rss_hwm_mb": summary.get("rss_hwm_mb"),
        }
        if cuda_peak is not None:
            mem["cuda_allocator_peak_mb"] = cuda_peak
            mem["device_peak_mb"] = summary.get("device_mem_peak_mb")
            mem["process_device_peak_mb"] = summary.get("process_mem_peak_mb")
            mem["peak_mb"] = cuda_peak
        else:
            mem["peak_mb"] = summary.get("peak_rss_mb")
        return mem

    @staticmethod
    def _energy(sampler_result) -> dict[str, Any]:
        """Energy of the timed loop: total, per image, images per kWh and how it was measured
        (``unavailable`` with the reason, never zero)."""
        summary = sampler_result.summary
        if summary.get("energy_j") is None:
            out: dict[str, Any] = {
                "energy_j": None,
                "j_per_image": None,
                "images_per_kwh": None,
                "method": "unavailable",
                "reason": sampler_result.missing.get("energy", "this sampler reads no energy"),
            }
        else:
            keys = ("energy_j", "j_per_image", "images_per_kwh", "avg_power_w", "method",
                    "window_s", "images")
            out = {k: summary.get(k) for k in keys}
            if summary.get("energy_note"):
                out["note"] = summary["energy_note"]
        out["scope"] = summary.get("energy_scope")
        gpus = summary.get("gpus") or {}
        if gpus:
            out["per_device"] = {f"cuda:{k}": g.get("energy") for k, g in gpus.items()}
            host = summary.get("cpu_energy") or {}
            if host.get("energy_j") is not None:
                out["host"] = host
        return out

    def _quality(self, base, images, reference, prompts, labels, classifier):
        """Score the quality images; computed apart from the timed loop.

        Returns the record's fields ``quality`` (values), ``quality_meta`` (each metric's
        direction and unit), ``quality_details`` (what FID/KID were computed on, hub
        backbones, and ``unavailable``: metric -> why it was not computed) and
        ``quality_noise_floor`` (FID/KID/adherence between real samples of the same size,
        across seeds: differences below it mean nothing).
        """
        from bench.quality import adherence, fidelity
        from bench.quality.suite import QualitySuite

        quality: dict[str, Any] = {}
        quality["psnr"] = fidelity.psnr(images, reference)
        quality["ssim"] = fidelity.ssim(images, reference)
        if classifier is not None:
            quality["adherence"] = adherence.adherence(classifier, images, labels)
        suite = getattr(self, "_quality_suite", None)
        if suite is None:
            suite = self._quality_suite = QualitySuite(
                base, self.config.quality, hub=self.config.model.startswith("hf:"),
                use_cache=self.config.use_cache,
            )
        extra, details = suite.score(images, reference, list(prompts))
        quality.update(extra)
        return {
            "quality": quality,
            "quality_meta": {name: METRICS[name].as_dict() for name in quality},
            "quality_details": details,
            "quality_noise_floor": suite.noise_floor(len(images)),
        }

    def _save_images(self, stack: StrategyStack, images: torch.Tensor) -> str:
        """Save a grid of the first quality images; returns its path inside the run dir."""
        from bench.images import save_grid, slug

        path = Path(self.config.out_dir) / "images" / f"{slug(stack.spec)}.png"
        save_grid(images[:GRID_IMAGES], path, ncol=10)
        return str(path.relative_to(self.config.out_dir))


def _model_gpus(model: ReferenceModel, device: torch.device) -> list[int]:
    """CUDA ordinals holding any of the model's weights, plus the run's device."""
    if device.type != "cuda":
        return []
    found = {device.index if device.index is not None else torch.cuda.current_device()}
    try:
        for module in model.components().values():
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.device.type == "cuda":
                    found.add(tensor.device.index or 0)
    except Exception:  # an exotic component: the run's device is still sampled
        pass
    return sorted(found)


def _median_step_ms(timing: Timing) -> float | None:
    steps = [d for it in timing.step_times_s for d in it]
    if not steps:
        return None
    steps.sort()
    return steps[len(steps) // 2] * 1000


def run(config: RunConfig, show_progress: bool = True, log: Progress | None = None) -> list[dict[str, Any]]:
    """Run ``config`` and return its records."""
    return Runner(config, show_progress=show_progress, log=log).run()


__all__ = ["DEFAULT_STRATEGIES", "RunConfig", "Runner", "parse_stacks", "run"]
