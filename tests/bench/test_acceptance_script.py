"""The GPU acceptance run, on any machine: its dry run, and the evidence it writes after a
step (acceptance.json, runs.tar.gz), from a hand-written run folder."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "gpu" / "acceptance.py"
STEPS = ("nvml", "timing", "tiny", "sdxl", "flux", "report")


@pytest.fixture(scope="module")
def acceptance():
    """tests/gpu/acceptance.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def dry_run() -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(ROOT / "tests" / "gpu" / "acceptance.sh"), "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_dry_run_lists_every_step_within_nine_minutes(dry_run):
    minutes = float(dry_run.split("at most ")[1].split(" min")[0])
    assert minutes <= 9
    for step in STEPS:
        assert f"  {step} " in dry_run, step
    files = int(re.search(r"files returned: (\d+) of at most 8", dry_run).group(1))
    assert files <= 8


def test_dry_run_commands(dry_run):
    for text in ("--model arch:sdxl@tiny", "--model arch:flux@tiny", "--model arch:sdxl",
                 "--resolution 1024", "--dtype fp16", "-s deepcache", "-s compile:scope=blocks",
                 "--model arch:flux", "--dtype bf16", "-s fbcache", "--device cuda",
                 "--no-report", "--quiet"):
        assert text in dry_run, text
    sdxl = next(ln for ln in dry_run.splitlines() if ln.startswith("  sdxl "))
    assert "-s quant:mode=fp8" in sdxl and "--steps 10" in sdxl
    assert "bench.cli report" in dry_run


def test_budgets_add_up(acceptance, tmp_path):
    steps = acceptance.plan(tmp_path)
    assert [s.name for s in steps] == list(STEPS)
    assert acceptance.PROBE_BUDGET_S + sum(s.budget_s for s in steps) == acceptance.TOTAL_S <= 540
    assert len(acceptance.RETURNED) <= acceptance.MAX_RETURNED
    no_fp8 = acceptance.plan(tmp_path, fp8=False, dtype=False)
    assert not any("quant:mode=fp8" in c or "--dtype" in c for s in no_fp8 for cmd in s.commands
                   for c in cmd)


def test_planned_commands_parse_with_this_cli(acceptance, tmp_path):
    from bench.cli import main as cli

    run = cli.commands["run"]
    has_dtype = any("--dtype" in p.opts for p in run.params)
    steps = acceptance.plan(tmp_path, dtype=has_dtype)
    for folder in (r for s in steps for r in s.runs):
        (tmp_path / folder).mkdir()  # the report reads folders that exist
    for step in steps:
        for cmd in step.commands:
            if cmd[1:3] == ["-m", "bench.cli"]:
                command = cli.commands[cmd[3]]
                ctx = command.make_context(cmd[3], cmd[4:])
                assert ctx.params, cmd


def _record(strategy: str, median: float, speedup: float, **extra) -> dict:
    return {"schema": "accelbench.record/2", "strategy": strategy, "status": "ok",
            "settings": {"dtype": "fp16"},
            "stats": {"latency_ms": {"median": median},
                      "speedup": {"ratio": speedup, "ci_low": speedup * 0.95, "ci_high": speedup * 1.05}},
            "memory": {"weights_mb": 6640.0, "peak_mb": 9100.0, "cuda_allocator_peak_mb": 9100.0,
                       "device_peak_mb": 9800.0},
            "energy": {"method": "nvml-energy-counter", "j_per_image": 310.0}, **extra}


def test_evidence_of_a_finished_step(acceptance, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    steps = acceptance.plan(work)
    logs = acceptance._prepare_folders(out, work, steps)
    run = work / "sdxl"
    run.mkdir()
    records = [_record("baseline", 900.0, 1.0), _record("deepcache", 520.0, 1.73),
               {"schema": "accelbench.record/2", "strategy": "quant:mode=fp8", "status": "unsupported",
                "error": "fp8 needs compute capability 8.9"}]
    # the last line is cut short, as when a run is killed while writing
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"schema": "acc')
    (run / "images").mkdir()
    (run / "images" / "big.png").write_bytes(os.urandom(acceptance.ARCHIVE_FILE_LIMIT + 1))
    (logs / "sdxl.log").write_text("loading arch:sdxl on cuda\n")
    (logs / "nvml.log").write_text(
        "GPU cuda:0: NVIDIA H200 (GPU-1), architecture Hopper, power limit 700.0 W, memory 143771 MiB\n"
        "idle: mean power 75.2 W, temperature 30 C, SM clock 345 MHz, device memory 500 MiB\n"
        "  [PASS] idle power plausible: 75.2 W (limit 700.0 W)\n"
        "  power: mean 612.0 W, peak 690.5 W; temperature max 60 C\n"
        "  energy: nvml-energy-counter 6120.0 J (avg 612.0 W); integrated power 6100.0 J; counter wraps 0\n"
        "  [FAIL] energy counter vs integrated power: far apart\n"
        "  [WARN] sampler overhead: +1.5% (target < 1%)\n")

    summary = acceptance.new_summary(steps, out, work)
    started = time.monotonic()
    nvml = steps[0]
    acceptance.record_step(summary, nvml, acceptance.Outcome([0], 31.0, 45.0), work,
                           (logs / "nvml.log").read_text())
    sdxl = next(s for s in steps if s.name == "sdxl")
    acceptance.record_step(summary, sdxl, acceptance.Outcome([1], 170.2, 180.0), work,
                           (logs / "sdxl.log").read_text())
    acceptance.save(summary, out, work, started)

    data = json.loads((out / "acceptance.json").read_text())
    assert data["schema"] == acceptance.SCHEMA and data["complete"] is False
    assert data["steps"]["timing"]["state"] == "pending"
    entry = data["steps"]["sdxl"]
    assert entry["state"] == "failed" and entry["exit"] == 1 and entry["budget_s"] == sdxl.budget_s
    stacks = {s["strategy"]: s for s in entry["runs"]["sdxl"]}
    assert set(stacks) == {"baseline", "deepcache", "quant:mode=fp8"}
    deep = stacks["deepcache"]
    assert (deep["status"], deep["median_ms"], deep["speedup"]) == ("ok", 520.0, 1.73)
    assert (deep["weights_mb"], deep["peak_mb"]) == (6640.0, 9100.0)
    assert (deep["energy_method"], deep["j_per_image"]) == ("nvml-energy-counter", 310.0)
    figures = data["steps"]["nvml"]["figures"]
    assert figures["gpu"] == "NVIDIA H200" and figures["idle_power_w"] == 75.2
    assert figures["load_power_mean_w"] == 612.0 and figures["energy_counter_j"] == 6120.0
    assert abs(figures["energy_gap"] - 20 / 6100) < 1e-9
    tags = {c["check"]: c["tag"] for c in data["checks"]}
    assert tags["sdxl finished"] == "FAIL" and tags["nvml finished"] == "PASS"
    assert tags["sdxl: deepcache ok"] == "PASS" and tags["sdxl: quant:mode=fp8 applies"] == "INFO"
    assert tags["sdxl: deepcache own memory measured"] == "PASS"
    assert tags["energy counter vs integrated power"] == "FAIL" and tags["sampler overhead"] == "INFO"
    assert data["failed"] == 2 and data["passed"] is False

    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
        assert "acceptance/sdxl/results.jsonl" in names and "acceptance/logs/nvml.log" in names
        assert "acceptance/sdxl/images/big.png" not in names
        assert tar.extractfile("acceptance/logs/sdxl.log").read().startswith(b"loading")
    assert data["archive"]["left_out"] == ["sdxl/images/big.png"]
    assert sorted(p.name for p in out.iterdir()) == ["acceptance.json", "runs.tar.gz"]


def test_a_step_over_its_time_is_stopped_with_its_group(acceptance, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = acceptance.Log(tmp_path / "acceptance.log")
    script = ("import subprocess, time; child = subprocess.Popen(['sleep', '60']); "
              "print('started', child.pid, flush=True); time.sleep(60)")
    step = acceptance.Step("timing", 1, [[sys.executable, "-c", script], [sys.executable, "-c", "print(1)"]])
    started = time.monotonic()
    outcome = acceptance.run_step(step, started + 1.5, logs, log, dict(os.environ))
    log.close()
    assert outcome.exit == "timeout" and outcome.exits == ["timeout"]
    assert time.monotonic() - started < 1.5 + 2 * acceptance.KILL_GRACE_S
    text = (logs / "timing.log").read_text()
    assert "started" in (tmp_path / "acceptance.log").read_text()
    grandchild = int(re.search(r"started (\d+)", text).group(1))
    gone_by = time.monotonic() + 5  # a killed process can take a moment to die
    while _alive(grandchild) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not _alive(grandchild), "the command's own child outlived the step"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status and "\nState:\tX" not in status
