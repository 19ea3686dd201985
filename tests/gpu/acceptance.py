"""The GPU acceptance run: prove the GPU path on real hardware in one prepared run.

    bash tests/gpu/acceptance.sh [--dry-run] [--out DIR] [--work DIR]

(the shell wrapper installs the carried wheels and sets up imports; see tests/gpu/README.md).

Steps, in order of evidence, each with a time budget; all of them, with the environment
probe, take at most 9 minutes (540 s) on one H100/H200-class GPU:

1. ``nvml``: ``tests/gpu/check_nvml.py``: power above idle while the GPU works, the energy
   counter against integrated power within 10%, memory peaks against the allocator's.
2. ``timing``: the engine's timed calls against CUDA events around the same calls (medians
   within 2%).
3. ``tiny``: ``accelbench run`` on ``arch:sdxl@tiny`` and ``arch:flux@tiny`` on CUDA.
4. ``sdxl``: full-size ``arch:sdxl`` at 1024x1024 in fp16 (10 steps): baseline,
   ``compile:scope=blocks``, ``quant:mode=fp8`` (compute capability 8.9 and up), ``deepcache``.
5. ``flux``: full-size ``arch:flux`` at 1024x1024 in bf16 (4 steps): baseline, ``fbcache``,
   ``compile:scope=blocks``.
6. ``report``: the HTML report of the full-size runs.

A step ends at the latest when the budgets up to and including its own have passed since
the start, so time an early step leaves is passed on and the total never grows. A step over
its time is stopped with its whole process group (its GPU memory is freed); a failed step
never stops the later ones.

After every step ``OUT/acceptance.json`` is rewritten (see tests/gpu/README.md for its fields)
and ``OUT/runs.tar.gz`` re-created from the work folder (run folders and per-step logs);
``OUT/acceptance.log`` holds every step's output as it comes. If the whole command is killed
at its limit, what was finished is already there. The exit status is 1 when any check failed
or a step did not finish. ``--dry-run`` lists the steps, their budgets and commands and the
files that come back, and exits 0 on any machine (no torch needed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SCHEMA = "accelbench.acceptance/1"

#: Seconds the environment probe may take before the first step.
PROBE_BUDGET_S = 30
#: Seconds each step may take; with the probe, 540 s (9 minutes) in all.
BUDGETS = {"nvml": 45, "timing": 25, "tiny": 50, "sdxl": 180, "flux": 180, "report": 30}
TOTAL_S = PROBE_BUDGET_S + sum(BUDGETS.values())
#: Every file that comes back from OUT, nothing else is written there (the machine returns 8).
RETURNED = ("acceptance.json", "acceptance.log", "report.html", "runs.tar.gz")
MAX_RETURNED = 8
#: A returned file must stay under the 16 MiB the machine brings back; kept with a margin.
FILE_LIMIT = 15 * 2**20
#: Files larger than this are left out of runs.tar.gz (full-size image grids).
ARCHIVE_FILE_LIMIT = 2 * 2**20
#: acceptance.log stops taking step output past this size (each step's own log keeps it all).
LOG_LIMIT = 12 * 2**20
#: Seconds between SIGTERM and SIGKILL when a step's process group is stopped.
KILL_GRACE_S = 5
#: Settings of every ``accelbench run``; then those of the full-size and the tiny runs.
RUN_COMMON = ("--device", "cuda", "--batch-size", "1", "--no-flops", "--no-report", "--quiet")
FULL_RUN = ("--resolution", "1024", "--iterations", "3", "--warmup", "2", "--quality-images", "2")
TINY_RUN = ("--iterations", "3", "--warmup", "2", "--quality-images", "2")
FP8 = "quant:mode=fp8"

#: (module, distribution) of the packages whose versions the probe records, torch first.
PACKAGES = (("torch", "torch"), ("diffusers", "diffusers"), ("transformers", "transformers"),
            ("torchao", "torchao"), ("torch_pruning", "torch-pruning"), ("optuna", "optuna"),
            ("accelerate", "accelerate"), ("torchmetrics", "torchmetrics"),
            ("pynvml", "nvidia-ml-py"))
CHECK_LINE = re.compile(r"^\s*\[(PASS|FAIL|WARN|INFO)\]\s+(.+?):\s*(.*)$")


# -- the plan -------------------------------------------------------------------------------
@dataclass
class Step:
    """One step of the run: its commands (run one after the other within its budget) and the
    run folders (relative to the work folder) that its ``accelbench run`` commands write."""

    name: str
    budget_s: int
    commands: list[list[str]]
    runs: list[str] = field(default_factory=list)


def _accelbench(*args: str) -> list[str]:
    return [PY, "-m", "bench.cli", *args]


def _stacks(*specs: str) -> list[str]:
    return [arg for spec in specs for arg in ("-s", spec)]


def _run(model: str, work: Path, run: str, *args: str) -> list[str]:
    return _accelbench("run", "--model", model, *args, *RUN_COMMON, "-o", str(work / run))


def plan(work: Path, fp8: bool = True, dtype: bool = True,
         report_runs: list[str] | None = None) -> list[Step]:
    """Every step, in order. ``fp8``: measure ``quant:mode=fp8`` (compute capability 8.9 and
    up); ``dtype``: pass ``--dtype`` (a CLI without it runs the model's own dtype);
    ``report_runs``: the run folders to report (default: the full-size runs)."""

    def dt(name: str) -> list[str]:
        return ["--dtype", name] if dtype else []

    sdxl_stacks = ["baseline", "compile:scope=blocks", *([FP8] if fp8 else []), "deepcache"]
    reported = report_runs if report_runs is not None else ["sdxl", "flux"]
    return [
        Step("nvml", BUDGETS["nvml"], [[PY, str(ROOT / "tests" / "gpu" / "check_nvml.py"),
                                        "--seconds", "10", "--overhead-rounds", "2"]]),
        Step("timing", BUDGETS["timing"], [[PY, str(Path(__file__).resolve()), "--timing-check"]]),
        Step("tiny", BUDGETS["tiny"], [
            _run("arch:sdxl@tiny", work, "tiny-sdxl", *TINY_RUN,
                 *_stacks("baseline", "bf16", "deepcache")),
            _run("arch:flux@tiny", work, "tiny-flux", *TINY_RUN,
                 *_stacks("baseline", "bf16", "fbcache")),
        ], runs=["tiny-sdxl", "tiny-flux"]),
        Step("sdxl", BUDGETS["sdxl"], [
            _run("arch:sdxl", work, "sdxl", *FULL_RUN, *dt("fp16"), "--steps", "10",
                 *_stacks(*sdxl_stacks)),
        ], runs=["sdxl"]),
        Step("flux", BUDGETS["flux"], [
            _run("arch:flux", work, "flux", *FULL_RUN, *dt("bf16"), "--steps", "4",
                 *_stacks("baseline", "fbcache", "compile:scope=blocks")),
        ], runs=["flux"]),
        Step("report", BUDGETS["report"], [
            _accelbench("report", *(str(work / r) for r in reported), "-o",
                        str(work / "report.html"), "--title", "accelbench GPU acceptance"),
        ] if reported else []),
    ]


def dry_run(steps: list[Step], out: Path, work: Path) -> int:
    """Print the steps, their budgets and commands, the total and the files that come back."""
    total = PROBE_BUDGET_S + sum(s.budget_s for s in steps)
    print(f"GPU acceptance run: {len(steps)} steps, at most {total / 60:.1f} min ({total} s) "
          f"with the environment probe; evidence into {out}, work folder {work}")
    print(f"  {'probe':<7} ({PROBE_BUDGET_S:>3} s, by {PROBE_BUDGET_S:>3} s): "
          f"{PY} {Path(__file__).resolve()} --probe")
    by = PROBE_BUDGET_S
    for step in steps:
        by += step.budget_s
        head = f"  {step.name:<7} ({step.budget_s:>3} s, by {by:>3} s): "
        for i, cmd in enumerate(step.commands):
            print((head if i == 0 else " " * len(head)) + shlex.join(cmd))
    print(f"  ({FP8} only where the GPU's compute capability is 8.9 or more; --dtype only "
          "where `accelbench run` has it; the report is copied into OUT)")
    print(f"files returned: {len(RETURNED)} of at most {MAX_RETURNED}: "
          + ", ".join(str(out / f) for f in RETURNED))
    return 0


# -- the environment ------------------------------------------------------------------------
def probe() -> int:
    """Print one JSON line: Python, torch, CUDA, the GPU, the driver, package versions and what
    this checkout's CLI offers. Run in a child process, so this one never holds the GPU."""
    import platform

    info: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                            "platform": platform.platform(),
                            "packages": {dist: _package(module, dist) for module, dist in PACKAGES}}
    info.update(_cuda_info())
    info.update(_cli_info())
    print(json.dumps(info, default=str))
    return 0


def _package(module: str, dist: str) -> str:
    """The installed version of ``dist`` if ``module`` imports, else why it does not."""
    import importlib
    from importlib import metadata

    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        return f"not importable: {type(exc).__name__}: {exc}"
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(imported, "__version__", "installed"))


def _cuda_info() -> dict[str, Any]:
    """torch's view of CUDA and the GPU, and the driver's version from NVML."""
    out: dict[str, Any] = {}
    try:
        import torch

        out["torch_cuda"] = torch.version.cuda
        out["cuda_available"] = torch.cuda.is_available()
        if out["cuda_available"]:
            props = torch.cuda.get_device_properties(0)
            out["gpu"] = props.name
            out["compute_capability"] = list(torch.cuda.get_device_capability(0))
            out["gpu_memory_mb"] = round(props.total_memory / 2**20)
            out["gpu_count"] = torch.cuda.device_count()
    except Exception as exc:  # noqa: BLE001
        out["cuda_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        out["driver"] = driver.decode() if isinstance(driver, bytes) else driver
        out.setdefault("gpu", _nvml_name(pynvml))
    except Exception as exc:  # noqa: BLE001
        out["driver_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _nvml_name(pynvml: Any) -> str:
    name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
    return name.decode() if isinstance(name, bytes) else name


def _cli_info() -> dict[str, Any]:
    """Whether ``accelbench run`` takes ``--dtype``, and whether the planned stacks parse."""
    out: dict[str, Any] = {}
    try:
        from bench.cli import main as cli

        options = {opt for param in cli.commands["run"].params for opt in param.opts}
        out["run_has_dtype"] = "--dtype" in options
    except Exception as exc:  # noqa: BLE001
        out["cli_error"] = f"{type(exc).__name__}: {exc}"
    try:
        from strategies import parse_stack

        specs = {"baseline", "bf16", "deepcache", "fbcache", "compile:scope=blocks", FP8}
        out["stacks"] = {spec: _parses(parse_stack, spec) for spec in sorted(specs)}
    except Exception as exc:  # noqa: BLE001
        out["stacks_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _parses(parse: Any, spec: str) -> str:
    try:
        parse(spec)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def environment(install_log: Path | None, timeout: float) -> dict[str, Any]:
    """The probe's JSON (in a child process, within ``timeout``), the git commit and how the
    wheels were installed."""
    env: dict[str, Any] = {"install": os.environ.get("ACCEPTANCE_INSTALL"),
                           "torchao_skip_so_files": os.environ.get("TORCHAO_FORCE_SKIP_LOADING_SO_FILES") == "1",
                           "pythonpath": os.environ.get("PYTHONPATH")}
    env.update(_commit())
    try:
        res = subprocess.run([PY, str(Path(__file__).resolve()), "--probe"], cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        env.update(json.loads(lines[-1]) if lines else {"probe_error": res.stderr[-2000:]})
    except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as exc:
        env["probe_error"] = f"{type(exc).__name__}: {exc}"
    if install_log is not None and install_log.is_file():
        env["install_log_tail"] = install_log.read_text(errors="replace")[-2000:]
    return env


def _commit() -> dict[str, Any]:
    """The checkout's commit (and whether it has changes), else the one prepare.sh saw."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=10)
            return {"commit": head.stdout.strip(), "commit_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        pass
    saved = ROOT / ".whl" / "COMMIT"
    if saved.is_file():
        return {"commit": None, "commit_at_prepare": saved.read_text().strip()}
    return {"commit": None}


def environment_checks(env: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks on the environment: the wheels installed, the probe answered, the packages the
    steps need import, the GPU seen, ``--dtype`` offered."""
    install = env.get("install") or ""
    out = [check("probe", "wheels installed", None if not install else not install.startswith("FAILED"),
                 install or "not run through acceptance.sh"),
           check("probe", "environment probed", "probe_error" not in env, env.get("probe_error"))]
    for name in ("torch", "diffusers", "transformers", "torchao"):
        version = (env.get("packages") or {}).get(name)
        if version is not None:
            out.append(check("probe", f"{name} imports", not version.startswith("not importable"), version))
    if "probe_error" not in env:
        out.append(check("probe", "CUDA GPU seen", bool(env.get("cuda_available")),
                         f"{env.get('gpu')}, compute capability {env.get('compute_capability')}, "
                         f"driver {env.get('driver')}, CUDA {env.get('torch_cuda')}"))
    has = env.get("run_has_dtype")
    out.append(check("probe", "accelbench run has --dtype", has,
                     "the model steps run in the model's own dtype" if has is False
                     else env.get("cli_error")))
    return out


def fp8_capable(env: dict[str, Any]) -> bool:
    """False only where the probe saw a GPU below compute capability 8.9; where it saw none
    the engine itself refuses the stack and says why."""
    cap = env.get("compute_capability")
    return not cap or tuple(cap) >= (8, 9)


# -- running a step -------------------------------------------------------------------------
class Log:
    """acceptance.log: every line of every step, flushed as it comes, up to ``LOG_LIMIT``."""

    def __init__(self, path: Path) -> None:
        self.file: IO[str] = path.open("a", buffering=1, errors="replace")
        self.size = path.stat().st_size
        self.full = False

    def write(self, text: str, echo: bool = True) -> None:
        if echo:
            sys.stdout.write(text)
            sys.stdout.flush()
        if self.full:
            return
        if self.size + len(text) > LOG_LIMIT:
            self.full = True
            text = "[acceptance.log is full: the rest is in each step's log, in runs.tar.gz]\n"
        self.file.write(text)
        self.file.flush()
        self.size += len(text)

    def close(self) -> None:
        self.file.close()


@dataclass
class Outcome:
    """How a step's commands ended: one exit code (or ``timeout``) per command run."""

    exits: list[int | str]
    seconds: float
    timeout_s: float

    @property
    def exit(self) -> int | str:
        """The step's exit: ``timeout`` if one command ran out of time, else the worst code."""
        if "timeout" in self.exits:
            return "timeout"
        codes = [e for e in self.exits if isinstance(e, int)]
        return max(codes, key=abs) if codes else "not run"


#: The child process running now, so a signal to this one can stop its whole group.
_current: subprocess.Popen | None = None


def _popen(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` in a process group of its own (a new session before Python 3.11), its
    output merged into one pipe."""
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", **group)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process's group, SIGKILL after ``KILL_GRACE_S``: frees its GPU memory."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(cmd: list[str], timeout: float, step_log: IO[str], log: Log,
                env: dict[str, str]) -> int | str:
    """Run ``cmd`` for at most ``timeout`` seconds, its output copied line by line to the
    step's log and acceptance.log; returns its exit code or ``timeout``."""
    global _current
    if timeout <= 0:
        return "timeout"
    proc = _popen(cmd, env)
    _current = proc

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            step_log.write(line)
            step_log.flush()
            log.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc: int | str = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        rc = "timeout"
    reader.join(timeout=KILL_GRACE_S)
    try:  # whatever the command left running in its group (compile workers, say) goes too
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _current = None
    return rc


def run_step(step: Step, deadline: float, logs: Path, log: Log, env: dict[str, str]) -> Outcome:
    """Every command of ``step`` until ``deadline`` (a ``time.monotonic()`` value)."""
    started = time.monotonic()
    exits: list[int | str] = []
    with (logs / f"{step.name}.log").open("w", errors="replace") as step_log:
        for cmd in step.commands:
            line = f"$ {shlex.join(cmd)}\n"
            step_log.write(line)
            log.write(line)
            exits.append(run_command(cmd, deadline - time.monotonic(), step_log, log, env))
            if exits[-1] == "timeout":
                break
    return Outcome(exits, time.monotonic() - started, deadline - started)


# -- reading what a step left ---------------------------------------------------------------
def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run folder's results.jsonl; a line cut short is skipped."""
    path = run_dir / "results.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def stack_figures(record: dict[str, Any]) -> dict[str, Any]:
    """The figures of one record that acceptance.json keeps."""
    stats = record.get("stats") or {}
    memory, energy = record.get("memory") or {}, record.get("energy") or {}
    speedup, cold = stats.get("speedup") or {}, record.get("cold") or {}
    return {
        "strategy": record.get("strategy"),
        "status": record.get("status", "ok"),
        "median_ms": (stats.get("latency_ms") or {}).get("median"),
        "speedup": speedup.get("ratio"),
        "speedup_ci": [speedup.get("ci_low"), speedup.get("ci_high")],
        "weights_mb": memory.get("weights_mb"),
        "added_mb": memory.get("added_mb"),
        "activations_mb": memory.get("activations_mb"),
        "peak_mb": memory.get("peak_mb"),
        "allocator_peak_mb": memory.get("cuda_allocator_peak_mb"),
        "device_peak_mb": memory.get("device_peak_mb"),
        "energy_method": energy.get("method"),
        "j_per_image": energy.get("j_per_image"),
        "dtype": (record.get("settings") or {}).get("dtype"),
        "apply_s": cold.get("apply_s"),
        "first_call_s": cold.get("first_call_s"),
        "error": record.get("error"),
    }


def check(step: str, name: str, ok: bool | None, detail: Any = None) -> dict[str, Any]:
    """One check: ``ok`` True (PASS), False (FAIL) or None (INFO)."""
    tag = "INFO" if ok is None else "PASS" if ok else "FAIL"
    return {"step": step, "check": name, "ok": ok, "tag": tag,
            "detail": None if detail is None else str(detail)}


def run_checks(step: str, run: str, stacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checks on the per-stack figures of one run folder."""
    if not stacks:
        return [check(step, f"{run}: results written", False, "no records in results.jsonl")]
    out = []
    for s in stacks:
        name = f"{run}: {s['strategy']}"
        if s["status"] == "unsupported":
            out.append(check(step, f"{name} applies", None, s["error"]))
            continue
        out.append(check(step, f"{name} ok", s["status"] == "ok", s["error"]))
        if s["status"] != "ok":
            continue
        alloc, device = s["allocator_peak_mb"], s["device_peak_mb"]
        out.append(check(step, f"{name} allocator and device peaks",
                         bool(alloc) and bool(device) and device >= alloc,
                         f"allocator {alloc} MiB, device {device} MiB"))
        out.append(check(step, f"{name} own memory measured",
                         s["weights_mb"] is not None and s["peak_mb"] is not None,
                         f"weights {s['weights_mb']} MiB, peak {s['peak_mb']} MiB"))
        out.append(check(step, f"{name} energy measured", s["energy_method"] not in (None, "unavailable"),
                         f"{s['energy_method']}: {s['j_per_image']} J/image"))
        out.append(check(step, f"{name} figures", None,
                         f"{_num(s['median_ms'], '.0f')} ms/call, speedup {_num(s['speedup'], '.2f')}, "
                         f"weights {_num(s['weights_mb'], '.0f')} MiB, peak {_num(s['peak_mb'], '.0f')} MiB, "
                         f"{_num(s['j_per_image'], '.1f')} J/image"))
    return out


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def output_checks(step: str, text: str) -> list[dict[str, Any]]:
    """The ``[PASS]``/``[FAIL]``/``[WARN]`` lines a check script printed (WARN is INFO)."""
    out = []
    for line in text.splitlines():
        m = CHECK_LINE.match(line)
        if m:
            tag, name, detail = m.groups()
            out.append(check(step, name, True if tag == "PASS" else False if tag == "FAIL" else None,
                             detail))
    return out


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


#: check_nvml.py's figure lines: (pattern, names of its groups in order).
NVML_FIGURES = (
    (r"^GPU cuda:\S+: (.+?) \(.*power limit (\S+) W, memory (\S+) MiB", ("gpu", "power_limit_w", "memory_total_mb")),
    (r"^idle: mean power (\S+) W", ("idle_power_w",)),
    (r"^load: (\d+) iterations in (\S+) s, (\d+) samples", ("load_iterations", "load_s", "load_samples")),
    (r"^\s+power: mean (\S+) W, peak (\S+) W", ("load_power_mean_w", "load_power_peak_w")),
    (r"^\s+energy: (\S+) (\S+) J \(avg (\S+) W\); integrated power (\S+) J",
     ("energy_method", "energy_counter_j", "energy_avg_power_w", "energy_integrated_j")),
    (r"^\s+memory: allocator peak (\S+) MiB, reserved peak (\S+) MiB, NVML process peak (\S+) MiB, device peak (\S+) MiB",
     ("allocator_peak_mb", "reserved_peak_mb", "process_peak_mb", "device_peak_mb")),
    (r"^overhead: .*slowdown ([+-]?[\d.]+)%", ("sampler_slowdown_pct",)),
)
_TEXT_FIGURES = {"gpu", "energy_method"}


def nvml_figures(text: str) -> dict[str, Any]:
    """Power, energy and memory figures parsed from check_nvml.py's output."""
    out: dict[str, Any] = {}
    for pattern, names in NVML_FIGURES:
        m = re.search(pattern, text, re.MULTILINE)
        if m:
            for name, value in zip(names, m.groups(), strict=True):
                out[name] = value if name in _TEXT_FIGURES else _float(value)
    counter, integrated = out.get("energy_counter_j"), out.get("energy_integrated_j")
    if counter is not None and integrated:
        out["energy_gap"] = abs(counter - integrated) / integrated
    return out


def timing_figures(text: str) -> dict[str, Any]:
    """The medians and their ratio from the timing check's JSON line."""
    for line in reversed(text.splitlines()):
        if line.startswith("{") and "ratio" in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return {}


# -- acceptance.json and runs.tar.gz --------------------------------------------------------
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_summary(steps: list[Step], out: Path, work: Path) -> dict[str, Any]:
    """acceptance.json before any step: every step pending."""
    return {
        "schema": SCHEMA, "started": now(), "updated": now(), "complete": False, "passed": False,
        "budget_s": PROBE_BUDGET_S + sum(s.budget_s for s in steps), "elapsed_s": 0.0,
        "out": str(out), "work": str(work), "environment": {},
        "steps": {s.name: {"state": "pending", "budget_s": s.budget_s,
                           "commands": [shlex.join(c) for c in s.commands]} for s in steps},
        "checks": [], "failed": 0, "archive": {},
    }


def record_step(summary: dict[str, Any], step: Step, outcome: Outcome, work: Path,
                text: str) -> None:
    """Put a finished step's exit, time, figures and checks into ``summary``."""
    entry = summary["steps"][step.name]
    rc = outcome.exit
    entry.update({"state": "timeout" if rc == "timeout" else "done" if rc == 0 else "failed",
                  "exit": rc, "exits": outcome.exits, "seconds": round(outcome.seconds, 1),
                  "timeout_s": round(outcome.timeout_s, 1), "log": f"logs/{step.name}.log"})
    checks = [check(step.name, f"{step.name} finished", rc == 0,
                    f"exit {rc} in {outcome.seconds:.0f} s (budget {step.budget_s} s, "
                    f"allowed {outcome.timeout_s:.0f} s)")]
    if step.name == "nvml":
        entry["figures"] = nvml_figures(text)
        checks += output_checks(step.name, text)
    elif step.name == "timing":
        entry["figures"] = timing_figures(text)
        checks += output_checks(step.name, text)
    if step.runs:
        entry["runs"] = {}
        for run in step.runs:
            stacks = [stack_figures(r) for r in read_records(work / run)]
            entry["runs"][run] = stacks
            checks += run_checks(step.name, run, stacks)
    summary["checks"] += checks


def finish_summary(summary: dict[str, Any], started: float) -> None:
    """Refresh the totals: elapsed time, failed checks, whether every step ran and passed."""
    summary["updated"] = now()
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    summary["failed"] = sum(c["ok"] is False for c in summary["checks"])
    states = [s["state"] for s in summary["steps"].values()]
    summary["complete"] = all(s not in ("pending", "running") for s in states)
    summary["passed"] = summary["complete"] and summary["failed"] == 0


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=1, default=str))
    os.replace(part, path)


def _files(work: Path, roots: list[str]) -> list[Path]:
    """The files under ``roots`` (folders or files, relative to the work folder)."""
    found: list[Path] = []
    for root in (work / r for r in roots):
        found += [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return found


def _archive_members(work: Path, roots: list[str], skip_big: bool,
                     skip_media: bool) -> tuple[list[Path], list[str]]:
    """Files of the work folder that go into runs.tar.gz, and those left out."""
    keep, left = [], []
    for path in _files(work, roots):
        rel = path.relative_to(work)
        media = rel.parts[1:2] in (("images",), ("series",)) or path.suffix in (".png", ".jpg")
        if (skip_big and path.stat().st_size > ARCHIVE_FILE_LIMIT) or (skip_media and media):
            left.append(str(rel))
        else:
            keep.append(path)
    return keep, left


def archive(work: Path, out: Path, roots: list[str]) -> dict[str, Any]:
    """Re-create OUT/runs.tar.gz from ``roots`` in the work folder (run folders, logs), under
    the size that comes back: large files are left out, then images and series if it is still
    too big."""
    target, part = out / "runs.tar.gz", out / "runs.tar.gz.part"
    for skip_media in (False, True):
        keep, left = _archive_members(work, roots, skip_big=True, skip_media=skip_media)
        with tarfile.open(part, "w:gz", compresslevel=6) as tar:
            for path in keep:
                tar.add(path, arcname=str(Path("acceptance") / path.relative_to(work)))
        if part.stat().st_size <= FILE_LIMIT:
            break
    os.replace(part, target)
    return {"bytes": target.stat().st_size, "files": len(keep), "left_out": left}


def archived(summary: dict[str, Any]) -> list[str]:
    """What runs.tar.gz holds, relative to the work folder: the step logs, every step's run
    folders and the report."""
    runs = [r for entry in summary["steps"].values() for r in entry.get("runs", {})]
    return ["logs", *runs, "report.html"]


def save(summary: dict[str, Any], out: Path, work: Path, started: float) -> None:
    """Rewrite acceptance.json and runs.tar.gz (called after every step)."""
    finish_summary(summary, started)
    try:
        summary["archive"] = archive(work, out, archived(summary))
    except OSError as exc:
        summary["archive"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_json(out / "acceptance.json", summary)


def publish_report(work: Path, out: Path, summary: dict[str, Any]) -> None:
    """Copy the report into OUT when it exists and fits what comes back."""
    report = work / "report.html"
    if not report.is_file():
        return
    size = report.stat().st_size
    fits = size <= FILE_LIMIT
    if fits:
        (out / "report.html").write_bytes(report.read_bytes())
    summary["checks"].append(check("report", "report.html comes back", fits,
                                   f"{size / 2**20:.1f} MiB (limit {FILE_LIMIT / 2**20:.0f} MiB)"))


# -- the timing check (its own process) -----------------------------------------------------
def timing_check() -> int:
    """The engine's timed calls against CUDA events around the same calls."""
    import statistics

    import torch

    from bench.measure.arms import LocalArm

    class Model:
        """Matrix products standing in for a model's steps."""

        device = torch.device("cuda")

        def __init__(self) -> None:
            self.a = torch.randn(4096, 4096, device="cuda")

        def generate(self, prompts, seeds, step_callback=None):
            x = self.a
            for i in range(8):
                x = torch.tanh(x @ self.a)
                if step_callback:
                    step_callback(i)
            return x

    arm = LocalArm("matmul", Model(), ["p"], [0])
    arm.warmup(3)
    ours, events = [], []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        got = arm.time(1)
        end.record()
        torch.cuda.synchronize()
        ours.append(got.latencies_s[0] * 1000)
        events.append(start.elapsed_time(end))
    a, b = statistics.median(ours), statistics.median(events)
    ratio = a / b
    ok = abs(ratio - 1) <= 0.02
    print(json.dumps({"harness_median_ms": a, "cuda_events_median_ms": b, "ratio": ratio}))
    print(f"  [{'PASS' if ok else 'FAIL'}] harness vs CUDA events: {ratio:.4f} (limit 1 +- 0.02)")
    return 0 if ok else 1


# -- the run --------------------------------------------------------------------------------
def _prepare_folders(out: Path, work: Path, steps: list[Step]) -> Path:
    """Create OUT and the work folder, clear what an earlier run left; returns the log folder."""
    out_r, work_r = out.resolve(), work.resolve()
    if out_r == work_r or out_r in work_r.parents or work_r in out_r.parents:
        raise SystemExit(f"--out {out} and --work {work} must be separate folders")
    out.mkdir(parents=True, exist_ok=True)
    for name in RETURNED:
        (out / name).unlink(missing_ok=True)
    logs = work / "logs"
    for old in [logs, work / "report.html", *(work / r for s in steps for r in s.runs)]:
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def _reported_runs(work: Path) -> list[str]:
    """The run folders the report step shows: the full-size runs that wrote records, else the
    tiny ones."""
    full = [r for r in ("sdxl", "flux") if read_records(work / r)]
    return full or [r for r in ("tiny-sdxl", "tiny-flux") if read_records(work / r)]


def _on_signal(signum: int, _frame: Any) -> None:
    """Stop the running step's group, then leave through SystemExit (the evidence is saved)."""
    if _current is not None:
        stop_group(_current)
    raise SystemExit(f"stopped by signal {signum}")


def acceptance(out: Path, work: Path, install_log: Path | None) -> int:
    """The whole run; evidence in ``out`` after every step."""
    started = time.monotonic()
    steps = plan(work)
    logs = _prepare_folders(out, work, steps)
    log = Log(out / "acceptance.log")
    summary = new_summary(steps, out, work)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        log.write(f"== acceptance: {len(steps)} steps, at most {summary['budget_s']} s, {now()}\n")
        env_info = environment(install_log, PROBE_BUDGET_S)
        if install_log is not None and install_log.is_file():
            (logs / "install.log").write_bytes(install_log.read_bytes())
        summary["environment"] = env_info
        summary["checks"] += environment_checks(env_info)
        steps = plan(work, fp8=fp8_capable(env_info), dtype=env_info.get("run_has_dtype") is not False)
        summary["steps"] = new_summary(steps, out, work)["steps"]
        log.write(f"environment: {json.dumps(env_info, default=str)}\n")
        save(summary, out, work, started)
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        by = started + PROBE_BUDGET_S
        for step in steps:
            by += step.budget_s
            if step.name == "report":
                step = plan(work, report_runs=_reported_runs(work))[-1]
                summary["steps"]["report"]["commands"] = [shlex.join(c) for c in step.commands]
            run_one(step, by, summary, logs, log, child_env, work)
            if step.name == "report":
                publish_report(work, out, summary)
            save(summary, out, work, started)
        return _conclude(summary, out, log)
    except BaseException as exc:
        log.write(f"== acceptance stopped: {type(exc).__name__}: {exc}\n")
        for entry in summary["steps"].values():
            if entry["state"] == "running":
                entry["state"] = "interrupted"
        save(summary, out, work, started)
        raise
    finally:
        log.close()


def run_one(step: Step, deadline: float, summary: dict[str, Any], logs: Path, log: Log,
            env: dict[str, str], work: Path) -> None:
    """Run one step until ``deadline`` and record it; marked running in acceptance.json while
    it runs, so a run killed mid-step says where."""
    entry = summary["steps"][step.name]
    if not step.commands:
        entry["state"] = "skipped"
        summary["checks"].append(check(step.name, f"{step.name} had something to do", None,
                                       "no run folder with records"))
        return
    entry["state"] = "running"
    write_json(Path(summary["out"]) / "acceptance.json", summary)
    log.write(f"== {step.name}: budget {step.budget_s} s, at most "
              f"{max(0.0, deadline - time.monotonic()):.0f} s, {now()}\n")
    outcome = run_step(step, deadline, logs, log, env)
    text = (logs / f"{step.name}.log").read_text(errors="replace")
    record_step(summary, step, outcome, work, text)
    log.write(f"== {step.name}: exit {outcome.exit} in {outcome.seconds:.0f} s\n")


def _conclude(summary: dict[str, Any], out: Path, log: Log) -> int:
    """Every check and the verdict, printed and logged; the exit status."""
    for c in summary["checks"]:
        log.write(f"  [{c['tag']}] {c['check']}: {c.get('detail') or ''}\n")
    verdict = "PASS" if summary["passed"] else f"FAIL ({summary['failed']} checks failed" + (
        "" if summary["complete"] else ", not every step ran") + ")"
    log.write(f"acceptance: {verdict} in {summary['elapsed_s']:.0f} s; {out / 'acceptance.json'}\n")
    return 0 if summary["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/acceptance"),
                        help="where the returned files go (default: $OUT, else runs/acceptance)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/acceptance"),
                        help="run folders and step logs (default: /tmp/acceptance)")
    parser.add_argument("--install-log", type=Path, help="the wheels' install log, to archive")
    parser.add_argument("--dry-run", action="store_true", help="list the steps; any machine")
    parser.add_argument("--timing-check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timing_check:
        return timing_check()
    if args.probe:
        return probe()
    if args.dry_run:
        return dry_run(plan(args.work), args.out, args.work)
    return acceptance(args.out, args.work, args.install_log)


if __name__ == "__main__":
    sys.exit(main())
