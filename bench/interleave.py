"""Interleaved A/B measurement: baseline and candidate timed in alternation, in one job.

On a shared, noisy runner (a CI machine, a laptop with other work) the machine's speed
drifts by tens of percent between two runs made minutes apart, so comparing a run made
today with one made yesterday (or even with one made five minutes ago) measures the
machine. Measuring the two sides *in alternation* makes drift hit both alike: each round
times ``block`` calls of every arm, and the order of the arms reverses every round
(A B, B A, A B ...), so no arm is always first after a switch.

Two forms:

* **strategies, same code** (in one process): a reference stack (``baseline``) and one or
  more candidate stacks on one loaded model. Each candidate's speedup over the reference
  is measured in the same job, so it holds on any machine: compare it with a committed
  baseline file (``accelbench gate --interleaved -s steps:n=10 --baseline FILE``).
* **code against code** (``baseline_src``): each strategy runs twice, in two worker
  processes, one importing ``bench``/``strategies`` from ``baseline_src`` (a checkout of
  the commit to compare with, e.g. ``git worktree add ../base origin/main``) and one from
  this tree. Their latencies are directly comparable because they were measured in
  alternation on the same machine at the same time (two processes running the same code
  can still differ by a few percent, from memory layout: use a threshold of 10% or more).

Results are ordinary run directories (``accelbench.record/1`` records, with an
``interleave`` block saying how they were measured); in the code-against-code form the
baseline tree's records go to ``OUT/baseline``. Memory and energy are not sampled here
(the arms share the measurement window; each record says so).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ARM_ORDER = "alternating: the order of the arms reverses every round (A B, B A, ...)"
_NO_SAMPLER = ("interleaved measurement times latency only: the arms alternate inside one "
               "window, so memory and power cannot be attributed to one of them")

Log = Callable[[str], None]


@dataclass(frozen=True)
class InterleaveConfig:
    """An interleaved measurement.

    Attributes:
        model: registry name or ``hf:<id or path>``.
        reference: strategy stack every candidate is compared with (measured as well).
        candidates: candidate strategy stacks.
        baseline_src: a code tree (a checkout of another commit) to measure the same stacks
            with, in worker processes; None measures strategies against strategies in this
            process.
        device: ``cpu``, ``cuda``...
        batch_size: images per generation call.
        steps: denoising steps of the reference (None: the model's default).
        rounds: interleaved rounds; each arm gets ``rounds * block`` timed calls.
        block: timed calls of one arm in a row.
        warmup: untimed calls of each arm before the first round.
        quality_images: images each arm generates for quality (0: none).
        seed: seed of the first image; image i uses seed + i.
        threads: torch threads in each worker process (None: torch's default).
        out_dir: the run directory.
    """

    model: str = "digits-unet"
    reference: str = "baseline"
    candidates: tuple[str, ...] = ()
    baseline_src: str | None = None
    device: str = "cpu"
    batch_size: int = 2
    steps: int | None = None
    rounds: int = 10
    block: int = 1
    warmup: int = 2
    quality_images: int = 16
    seed: int = 0
    threads: int | None = None
    out_dir: Path = Path("runs/interleaved")

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("rounds", 2), ("block", 1), ("warmup", 0),
                          ("quality_images", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.baseline_src is not None and not Path(self.baseline_src).is_dir():
            raise ValueError(f"baseline source {self.baseline_src!r} is not a directory")
        if self.baseline_src is not None and not (Path(self.baseline_src) / "bench").is_dir():
            raise ValueError(f"{self.baseline_src!r} has no bench/ package: not an accelbench tree")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


# ---------------------------------------------------------------------------------------
# Arms
# ---------------------------------------------------------------------------------------
@dataclass
class ArmTiming:
    """Raw timings of one arm across all rounds (seconds, ``perf_counter`` clock)."""

    latencies_s: list[float] = field(default_factory=list)
    bounds: list[tuple[float, float]] = field(default_factory=list)
    step_times_s: list[list[float]] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    #: Why the arm stopped (it raised); it then takes no further part.
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_call_s"] = self.warmup_s[0] if self.warmup_s else (
            self.latencies_s[0] if self.latencies_s else None)
        return data


class LocalArm:
    """An arm in this process: a model with a strategy stack applied.

    Args:
        label: name in logs and records.
        model: the model to time (already changed by ``stack``).
        spec: the canonical stack spec.
        batch_size, seed: the timed call's shape.
    """

    def __init__(self, label: str, model: Any, spec: str, batch_size: int, seed: int = 0,
                 info: dict[str, Any] | None = None) -> None:
        self.label = label
        self.model = model
        self.spec = spec
        self.batch_size = batch_size
        self.seed = seed
        self.info = info or {}
        self.prompts, _ = model.prompts(batch_size)
        self.seeds = [seed + i for i in range(batch_size)]

    def _call(self, step_callback):
        import torch

        with torch.inference_mode():
            return self.model.generate(self.prompts, self.seeds, step_callback=step_callback)

    def warmup(self, n: int) -> list[float]:
        from bench.harness import clock, synchronize

        out = []
        for _ in range(n):
            synchronize(self.model.device)
            t0 = clock()
            self._call(None)
            synchronize(self.model.device)
            out.append(clock() - t0)
        return out

    def time(self, n: int) -> dict[str, Any]:
        from bench.harness import TimingConfig, measure

        t = measure(self._call, self.model.device,
                    TimingConfig(warmup=0, min_iterations=n, min_seconds=0, max_iterations=n))
        return {"latencies_s": t.latencies_s, "bounds": t.bounds, "step_times_s": t.step_times_s}

    def images(self, n: int):
        """Quality images of ``n`` prompts (seed + i each) and their labels."""
        import torch

        prompts, labels = self.model.prompts(n)
        chunks = []
        for i in range(0, n, self.batch_size):
            with torch.inference_mode():
                chunks.append(self.model.generate(
                    prompts[i:i + self.batch_size],
                    [self.seed + j for j in range(i, min(i + self.batch_size, n))]))
        return torch.cat(chunks).float(), labels, prompts

    def close(self) -> None:
        pass


class WorkerError(RuntimeError):
    """A worker process that failed or answered nonsense; carries its stderr's tail."""


class WorkerArm:
    """An arm in a worker process importing ``bench`` from ``src`` (see
    :mod:`bench.interleave_worker`).

    Raises :class:`WorkerError` when the worker cannot start; an unsupported strategy is
    not an error: :attr:`status` says ``unsupported`` and :attr:`error` why.
    """

    def __init__(self, label: str, src: str | os.PathLike, config: dict[str, Any],
                 log_dir: Path, start_timeout_s: float = 600.0) -> None:
        self.label = label
        self.src = str(Path(src).resolve())
        self.spec = config["strategy"]
        self.batch_size = int(config["batch_size"])
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{_slug(label)}.log"
        source = (Path(__file__).with_name("interleave_worker.py")).read_text(encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = self.src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", source, json.dumps(config)],
            cwd=self.src, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, bufsize=1,
        )
        self.info = self._read()
        self.status = "ok"
        self.error: str | None = None
        if "error" in self.info:
            self.status = self.info.get("status", "failed")
            self.error = self.info["error"]
            if self.status == "failed":
                self.close()
                raise WorkerError(f"{label}: {self.error}\n{self.info.get('traceback', '')}")
        bench_file = str(self.info.get("bench_file", ""))
        if not Path(bench_file).resolve().is_relative_to(self.src):
            self.close()
            raise WorkerError(
                f"{label}: the worker imported bench from {bench_file}, not from {self.src}; "
                "is another accelbench installed in a way that shadows PYTHONPATH?"
            )
        if self.status == "ok":
            self.spec = self.info.get("spec", self.spec)

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self._log.flush()
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise WorkerError(f"{self.label}: worker exited (code {self.proc.poll()}):\n{tail}")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise WorkerError(f"{self.label}: unreadable answer {line[:200]!r}") from None

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise WorkerError(f"{self.label}: {reply['error']}")
        return reply

    def warmup(self, n: int) -> list[float]:
        return self._ask({"cmd": "warmup", "n": n})["warmup_s"] if n else []

    def time(self, n: int) -> dict[str, Any]:
        reply = self._ask({"cmd": "time", "n": n})
        reply["bounds"] = [tuple(b) for b in reply["bounds"]]
        return reply

    def images(self, n: int):
        import numpy as np
        import torch

        reply = self._ask({"cmd": "images", "n": n})
        data = np.frombuffer(base64.b64decode(reply["data"]), dtype=np.float32)
        return torch.from_numpy(data.copy()).reshape(reply["shape"]), reply["labels"], reply["prompts"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired, AssertionError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


# ---------------------------------------------------------------------------------------
# The interleaved loop
# ---------------------------------------------------------------------------------------
def measure_interleaved(
    arms: Sequence[Any], rounds: int, block: int = 1, warmup: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[ArmTiming]:
    """Warm every arm up, then time ``block`` calls of each arm per round, reversing the
    order of the arms every round. Returns one :class:`ArmTiming` per arm, in order.

    An arm other than the first (the reference) that raises is dropped from the remaining
    rounds, with the error in its :attr:`ArmTiming.error`; the reference raising ends it.
    """
    if len(arms) < 2:
        raise ValueError("an interleaved measurement needs at least two arms")
    timings = [ArmTiming() for _ in arms]

    def attempt(i: int, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # a failing candidate is a result, not the end of the job
            if i == 0:
                raise
            timings[i].error = f"{type(exc).__name__}: {exc}"
            return None

    for i, (arm, t) in enumerate(zip(arms, timings, strict=True)):
        t.warmup_s = list(attempt(i, lambda arm=arm: arm.warmup(warmup)) or [])
    indexed = list(enumerate(arms))
    for r in range(rounds):
        order = indexed if r % 2 == 0 else indexed[::-1]
        for i, arm in order:
            t = timings[i]
            if t.error:
                continue
            got = attempt(i, lambda arm=arm: arm.time(block))
            if got is None:
                continue
            t.latencies_s += list(got["latencies_s"])
            t.bounds += [tuple(b) for b in got["bounds"]]
            t.step_times_s += list(got["step_times_s"])
            t.rounds += [r] * len(got["latencies_s"])
        if progress:
            progress(r)
    return timings


def inject_slowdown(model: Any, fraction: float) -> Any:
    """Make every ``generate`` call of ``model`` take ``1 + fraction`` times as long.

    After each real call the wrapper busy-waits for ``fraction`` of that call's duration
    (spinning, not sleeping, so the extra time costs CPU as real work would). Used to check
    that the gate catches a slowdown of known size (``tests/benchmarks/scripts/gate_false_alarms.py``).
    """
    if fraction < 0:
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    inner = model.generate

    def slowed(*args: Any, **kwargs: Any):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        until = time.perf_counter() + fraction * (time.perf_counter() - t0)
        while time.perf_counter() < until:
            pass
        return out

    model.generate = slowed
    model.notes["injected_slowdown"] = fraction
    return model


# ---------------------------------------------------------------------------------------
# Quality (shared with the pytest plugin)
# ---------------------------------------------------------------------------------------
def score_quality(base: Any, images: Any, reference: Any, labels: Sequence[int] | None,
                  suite: Any = None, prompts: Sequence[str] = ()) -> dict[str, Any]:
    """PSNR and SSIM against ``reference``, adherence (where the domain has a classifier)
    and the distribution metrics of ``suite`` (a :class:`~bench.quality.suite.QualitySuite`,
    None: no FID/KID). Returns the record fields ``quality``, ``quality_meta`` and
    ``quality_details``."""
    from bench.quality import adherence, fidelity
    from bench.quality.base import METRICS

    quality: dict[str, float] = {}
    details: dict[str, Any] = {}
    if reference is not None:
        quality["psnr"] = fidelity.psnr(images, reference)
        quality["ssim"] = fidelity.ssim(images, reference)
    classifier = base.classifier()
    if classifier is not None and labels is not None:
        quality["adherence"] = adherence.adherence(classifier, images, labels)
    if suite is not None:
        extra, details = suite.score(images, reference, list(prompts))
        quality.update(extra)
    return {
        "quality": quality,
        "quality_meta": {name: METRICS[name].as_dict() for name in quality if name in METRICS},
        "quality_details": details,
    }


# ---------------------------------------------------------------------------------------
# A whole interleaved run
# ---------------------------------------------------------------------------------------
@dataclass
class InterleaveResult:
    """What :func:`run_interleaved` measured: the records of this tree (reference first)
    and, in the code-against-code form, those of the baseline tree."""

    out_dir: Path
    records: list[dict[str, Any]]
    baseline_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def baseline_dir(self) -> Path:
        return self.out_dir / "baseline"


def _stack_specs(config: InterleaveConfig) -> list[str]:
    from strategies import parse_stack

    specs = [parse_stack(config.reference).spec]
    for c in config.candidates:
        spec = parse_stack(c).spec
        if spec not in specs:
            specs.append(spec)
    return specs


def run_interleaved(config: InterleaveConfig, log: Log | None = None,
                    show_progress: bool = True) -> InterleaveResult:
    """Measure ``config`` (see the module docstring) and write its run directory(ies)."""
    log = log or (lambda msg: None)
    specs = _stack_specs(config)
    if config.baseline_src is None and len(specs) < 2:
        raise ValueError("strategies against strategies needs at least one candidate stack "
                         "that differs from the reference")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.baseline_src is None:
        arms, base, fingerprint, load_s = _local_arms(config, specs, log)
    else:
        arms, base, fingerprint, load_s = _worker_arms(config, specs, log)
    try:
        live = [a for a in arms if getattr(a, "status", "ok") == "ok"]
        log(f"interleaving {len(live)} arms: {config.rounds} rounds x {config.block} call(s)")
        timings = _timed(config, live, show_progress)
        by_label = dict(zip([a.label for a in live], timings, strict=True))
        images = _quality_images(
            config, [a for a in live if not by_label[a.label].error], log)
    finally:
        for a in arms:
            a.close()
    from bench import environment

    env = environment.capture(config.device)
    run_id = uuid.uuid4().hex[:12]
    suite = _suite(base, config) if config.quality_images >= 2 else None
    sides: dict[str, list[dict[str, Any]]] = {"current": [], "baseline": []}
    for side in sides:
        side_arms = [a for a in arms if _side(a) == side]
        if not side_arms:
            continue
        ref_arm = side_arms[0]
        for arm in side_arms:
            rec = _record(config, arm, by_label.get(arm.label), by_label.get(ref_arm.label),
                          run_id, env, fingerprint, load_s, side)
            if arm.label in images and config.quality_images:
                imgs, labels, prompts = images[arm.label]
                ref = images[ref_arm.label][0] if ref_arm.label in images else None
                rec.update(score_quality(base, imgs, ref, labels, suite, prompts))
            sides[side].append(rec)
    from bench import results

    for rec in sides["current"]:
        results.append(out, rec)
    for rec in sides["baseline"]:
        results.append(out / "baseline", rec)
    return InterleaveResult(out, sides["current"], sides["baseline"])


def _side(arm: Any) -> str:
    return "baseline" if arm.label.startswith("baseline-src:") else "current"


def _local_arms(config: InterleaveConfig, specs: list[str], log: Log):
    from bench.models import load_model
    from bench.models.base import ModelSpec
    from strategies import parse_stack

    log(f"loading {config.model} on {config.device}")
    t0 = time.perf_counter()
    base = load_model(ModelSpec(config.model, device=config.device))
    load_s = time.perf_counter() - t0
    if config.steps is not None:
        base.call_args["num_inference_steps"] = config.steps
    fingerprint = base.fingerprint()
    arms: list[Any] = []
    for spec in specs:
        stack = parse_stack(spec)
        stack.check_device(config.device)
        reason = next((f"{s.spec}: {r}" for s in stack if (r := s.supports(base))), None)
        if reason:
            arm = _Unsupported(spec, reason)
            log(f"[{spec}] not applicable: {reason}")
        else:
            t0 = time.perf_counter()
            model = stack.apply(base.clone())
            arm = LocalArm(spec, model, stack.spec, config.batch_size, config.seed,
                           info={"apply_s": time.perf_counter() - t0, "describe": model.describe(),
                                 "stack": stack.config(), "steps": model.steps,
                                 "dtype": str(model.dtype).replace("torch.", ""),
                                 "notes": model.notes})
        arms.append(arm)
    if isinstance(arms[0], _Unsupported):
        raise ValueError(f"the reference {specs[0]!r} cannot run: {arms[0].error}")
    return arms, base, fingerprint, load_s


def _worker_arms(config: InterleaveConfig, specs: list[str], log: Log):
    from bench.models import load_model
    from bench.models.base import ModelSpec

    here = Path(__file__).resolve().parent.parent
    arms: list[Any] = []
    logs = Path(config.out_dir) / "workers"
    try:
        for spec in specs:
            for side, src in (("baseline-src", config.baseline_src), ("current", here)):
                label = f"{side}:{spec}"
                log(f"[{label}] starting a worker in {src}")
                arm = WorkerArm(label, src, {
                    "model": config.model, "device": config.device, "strategy": spec,
                    "batch_size": config.batch_size, "steps": config.steps,
                    "seed": config.seed, "threads": config.threads,
                }, logs)
                if arm.status != "ok":
                    log(f"[{label}] not applicable: {arm.error}")
                arms.append(arm)
    except BaseException:
        for a in arms:
            a.close()
        raise
    # The scoring side (classifier, real images) comes from this tree.
    t0 = time.perf_counter()
    base = load_model(ModelSpec(config.model, device=config.device))
    load_s = time.perf_counter() - t0
    fingerprint = next((a.info["describe"].get("base_fingerprint") for a in arms
                        if a.status == "ok" and _side(a) == "current"), None)
    # Current-tree arms first on each side, matching reference order.
    arms.sort(key=lambda a: (_side(a) != "current", specs.index(_spec_of(a))))
    return arms, base, fingerprint, load_s


def _spec_of(arm: Any) -> str:
    return arm.label.split(":", 1)[1] if ":" in arm.label and arm.label.startswith(
        ("baseline-src:", "current:")) else arm.label


class _Unsupported:
    """A placeholder arm for a stack that cannot apply (recorded with its reason)."""

    status = "unsupported"

    def __init__(self, spec: str, error: str) -> None:
        self.label = spec
        self.spec = spec
        self.error = error
        self.info: dict[str, Any] = {}

    def close(self) -> None:
        pass


def _timed(config: InterleaveConfig, arms: list[Any], show_progress: bool) -> list[ArmTiming]:
    from tqdm.auto import tqdm

    with tqdm(total=config.rounds, desc="interleaved rounds", unit="round",
              disable=not show_progress, leave=False) as bar:
        return measure_interleaved(arms, config.rounds, config.block, config.warmup,
                                   progress=lambda r: bar.update(1))


def _quality_images(config: InterleaveConfig, arms: list[Any], log: Log) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not config.quality_images:
        return out
    for arm in arms:
        log(f"[{arm.label}] quality images: {config.quality_images}")
        out[arm.label] = arm.images(config.quality_images)
    return out


def _suite(base: Any, config: InterleaveConfig) -> Any:
    from bench.quality.config import QualityConfig
    from bench.quality.suite import QualitySuite

    return QualitySuite(base, QualityConfig(noise_floor_seeds=0),
                        hub=config.model.startswith("hf:"))


def _record(config: InterleaveConfig, arm: Any, timing: ArmTiming | None,
            ref_timing: ArmTiming | None, run_id: str, env: dict[str, Any],
            fingerprint: str | None, load_s: float, side: str) -> dict[str, Any]:
    from bench import stats

    info = getattr(arm, "info", {}) or {}
    describe = dict(info.get("describe") or {"name": config.model})
    if fingerprint and "base_fingerprint" not in describe:
        describe["base_fingerprint"] = fingerprint
    rec: dict[str, Any] = {
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": describe,
        "strategy": arm.spec,
        "stack": info.get("stack"),
        "status": getattr(arm, "status", "ok"),
        "error": getattr(arm, "error", None),
        "settings": {
            "device": config.device,
            "batch_size": config.batch_size,
            "steps": info.get("steps"),
            "dtype": info.get("dtype"),
            "quality_images": config.quality_images,
            "seed": config.seed,
        },
        "config": config.as_dict(),
        "environment": env,
        "interleave": {
            "arm": arm.label,
            "side": side,
            "src": getattr(arm, "src", None) or str(Path(__file__).resolve().parent.parent),
            "bench_file": info.get("bench_file"),
            "rounds": config.rounds,
            "block": config.block,
            "order": ARM_ORDER,
        },
    }
    if timing is None:
        return rec
    if timing.error:
        rec.update(status="failed", error=timing.error)
        return rec
    b = config.batch_size
    ms = [t * 1000 for t in timing.latencies_s]
    summary = stats.summarize(ms)
    st: dict[str, Any] = {
        "latency_ms": summary.as_dict(),
        "ms_per_image": summary.median / b,
        "images_per_s": b / (summary.median / 1000),
    }
    steps = sorted(d for it in timing.step_times_s for d in it)
    st["step_ms_median"] = steps[len(steps) // 2] * 1000 if steps else None
    if ref_timing is not None and ref_timing is not timing:
        st["speedup"] = stats.speedup(ref_timing.latencies_s, timing.latencies_s).as_dict()
    rec["timing"] = timing.as_dict()
    rec["stats"] = st
    rec["cold"] = {"load_s": info.get("load_s", load_s), "apply_s": info.get("apply_s"),
                   "first_call_s": rec["timing"]["first_call_s"]}
    rec["notes"] = info.get("notes") or {}
    rec["memory"] = {"peak_mb": None, "reason": _NO_SAMPLER}
    rec["energy"] = {"energy_j": None, "j_per_image": None, "images_per_kwh": None,
                     "method": "unavailable", "reason": _NO_SAMPLER}
    return rec




def verdict_for(result: InterleaveResult, rules: Any, baseline: Sequence[str | os.PathLike] = ()):
    """The gate's verdict on an interleaved run.

    * ``baseline`` given (files or run directories): this run against them, by key.
    * code against code: this tree's records against the baseline tree's (``OUT/baseline``).
    * otherwise (strategies against strategies): each candidate against the reference arm.
    """
    from bench import gate

    current = gate.entries_from_records(result.records, str(result.out_dir))
    if baseline:
        base = gate.read_many(baseline)
        return gate.gate(current, base, rules, [str(result.out_dir)], [str(p) for p in baseline])
    if result.baseline_records:
        base = gate.entries_from_records(result.baseline_records, str(result.baseline_dir))
        return gate.gate(current, base, rules, [str(result.out_dir)], [str(result.baseline_dir)])
    reference, *candidates = current
    return gate.gate_pairs([(reference, c) for c in candidates], rules, [str(result.out_dir)])


__all__ = [
    "ArmTiming", "InterleaveConfig", "InterleaveResult", "LocalArm", "WorkerArm", "WorkerError",
    "inject_slowdown", "measure_interleaved", "run_interleaved", "score_quality", "verdict_for",
]
