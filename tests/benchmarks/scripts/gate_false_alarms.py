"""How often the gate cries wolf, and how often it catches a real slowdown, on this machine.

    python tests/benchmarks/scripts/gate_false_alarms.py [--trials 20] [--rounds 15] [--json out.json]

Each trial measures two arms of the embedded model and asks the gate's latency rule
(:func:`bench.gate.compare_latency`: slower by more than ``--max-slowdown`` *and*
Mann-Whitney p < 0.05) whether the second is a regression:

* **A/A**: the same model, the same code, twice. Every "regression" is a false alarm.
* **A/B**: the second arm really is ``--slowdown`` (15%) slower: after each real call it
  spins for 15% of that call's time (:func:`tests.support.slowdown.inject_slowdown`). Every
  "pass" is a miss.

Both are measured in two measurement modes:

* ``interleaved``: the two arms alternate round by round in one job
  (:class:`bench.measure.schedules.Interleaved`), the mode meant for noisy runners. The
  same samples are judged twice: round by round (``interleaved-paired``: Wilcoxon
  signed-rank on per-round log ratios, what the gate does with two arms of one job) and
  unpaired (``interleaved-mwu``: Mann-Whitney U on the raw samples);
* ``sequential``: all of A, then all of B, as two separate runs would be (for contrast;
  Mann-Whitney U).

A/A and A/B trials alternate, so slow drift of the machine (other jobs starting and
stopping) reaches both alike. Targets (interleaved, paired, the gate's threshold at 5%): at
most 1 false alarm in 20 A/A trials, at least 19 catches in 20 A/B trials; exits 1 when
missed. The defaults (20 trials of each kind, 5 sequential ones, 20 rounds of a 2-step,
1-image call after the protocol's 2 warm-up calls) make 2 x (20 + 5) x 2 x 22 calls: about 10
minutes on a lightly loaded 2-core machine; measured (with 1 warm-up call, ``--warmup 1``)
18.5 and 49 minutes at load averages of 9-10 and 8-13.

Measured here (two runs): interleaved + paired 1/20 and 0/20 false alarms, 20/20 and 19/20
caught; the same samples unpaired (Mann-Whitney U) 0/20 and 0/20, 13/20 and 16/20;
sequential 1/5 and 1/5 false alarms, 3/5 and 2/5 caught.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository: tests.support


def _arms(base, slowdown: float | None, batch_size: int):
    from bench.measure.arms import LocalArm
    from tests.support.slowdown import inject_slowdown

    prompts, _ = base.prompts(batch_size)
    seeds = list(range(batch_size))
    a = LocalArm("A", base.clone(), prompts, seeds)
    b_model = base.clone()
    if slowdown:
        inject_slowdown(b_model, slowdown)
    b = LocalArm("B", b_model, prompts, seeds)
    return a, b


def _timing(rounds: int, warmup: int):
    from bench.core.config import TimingConfig

    return TimingConfig(warmup=warmup, min_iterations=rounds, max_iterations=rounds, min_seconds=0)


def trial(base, mode: str, slowdown: float | None, args) -> list[dict]:
    """One trial: measure A and B once, return the gate's verdict under each test that
    applies (interleaved: paired rounds and Mann-Whitney on the same samples)."""
    from bench import gate
    from bench.measure.schedules import Interleaved, Sequential

    arms = _arms(base, slowdown, args.batch_size)
    if mode == "interleaved":
        ta, tb = Interleaved().run(arms, _timing(args.rounds, args.warmup))
        tests = {"interleaved-paired": "auto", "interleaved-mwu": "mann-whitney"}
    else:
        ta, tb = Sequential().run(arms, _timing(args.rounds, args.warmup))
        tests = {"sequential-mwu": "mann-whitney"}
    job = f"trial-{time.perf_counter_ns()}"
    a = gate.Entry.from_latencies("A", ta.latencies_s, rounds=ta.rounds or None, run_id=job)
    b = gate.Entry.from_latencies("B", tb.latencies_s, rounds=tb.rounds or None, run_id=job)
    out = []
    for name, test in tests.items():
        rules = gate.Rules(max_slowdown=args.max_slowdown, alpha=args.alpha, test=test)
        check = gate.compare_latency(a, b, rules, "A/B")
        out.append({"mode": name, "injected": slowdown or 0.0, "slowdown": check.change,
                    "p_value": check.p_value, "test": check.test, "outcome": check.outcome,
                    "flagged": check.outcome == "regression",
                    "median_a_ms": check.baseline, "median_b_ms": check.current,
                    "latencies_a_s": ta.latencies_s, "latencies_b_s": tb.latencies_s})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-unet")
    parser.add_argument("--trials", type=int, default=20, help="trials of each kind and mode")
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per arm per trial")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per arm first")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (small = fast)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--slowdown", type=float, default=0.15, help="injected slowdown")
    parser.add_argument("--max-slowdown", type=float, default=0.05,
                        help="the gate's threshold (a fraction)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--sequential-trials", type=int, default=5,
                        help="trials of each kind in the sequential mode (a contrast; 0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write every trial here")
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(args.threads)
    from bench.models import load_model

    base = load_model(args.model)
    base.call_args["num_inference_steps"] = args.steps
    started = time.perf_counter()
    trials: list[dict] = []
    total = 2 * (args.trials + min(args.sequential_trials, args.trials))
    with tqdm(total=total, desc="gate trials", unit="trial") as bar:
        for i in range(args.trials):
            modes = ["interleaved"] + (["sequential"] if i < args.sequential_trials else [])
            for mode in modes:
                for slowdown in ((None, args.slowdown) if i % 2 == 0 else (args.slowdown, None)):
                    trials += [{"trial": i, **t} for t in trial(base, mode, slowdown, args)]
                    bar.update(1)
    elapsed = time.perf_counter() - started

    summary: dict[str, dict] = {}
    for mode in dict.fromkeys(t["mode"] for t in trials):
        aa = [t for t in trials if t["mode"] == mode and not t["injected"]]
        ab = [t for t in trials if t["mode"] == mode and t["injected"]]
        summary[mode] = {
            "false_alarms": sum(t["flagged"] for t in aa),
            "aa_trials": len(aa),
            "caught": sum(t["flagged"] for t in ab),
            "ab_trials": len(ab),
            "aa_slowdown_median": statistics.median(t["slowdown"] for t in aa),
            "aa_slowdown_range": [min(t["slowdown"] for t in aa), max(t["slowdown"] for t in aa)],
            "ab_slowdown_median": statistics.median(t["slowdown"] for t in ab),
            "ab_slowdown_range": [min(t["slowdown"] for t in ab), max(t["slowdown"] for t in ab)],
        }
    print(f"\nmodel={args.model} steps={args.steps} batch={args.batch_size} rounds={args.rounds} "
          f"per arm, gate: slower by > {args.max_slowdown:.0%} and p < {args.alpha}; "
          f"injected slowdown {args.slowdown:.0%}; load average {os.getloadavg()[0]:.1f}; "
          f"{elapsed / 60:.1f} min")
    for mode, s in summary.items():
        print(f"  {mode:<18} A/A false alarms {s['false_alarms']}/{s['aa_trials']} "
              f"(measured {s['aa_slowdown_median']:+.1%}, range {s['aa_slowdown_range'][0]:+.1%} "
              f"to {s['aa_slowdown_range'][1]:+.1%})   15% caught {s['caught']}/{s['ab_trials']} "
              f"(measured {s['ab_slowdown_median']:+.1%}, range {s['ab_slowdown_range'][0]:+.1%} "
              f"to {s['ab_slowdown_range'][1]:+.1%})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)},
                                         "summary": summary, "trials": trials,
                                         "elapsed_s": elapsed}, indent=1))
    target = summary.get("interleaved-paired")  # what the gate does with interleaved arms
    if target is None:
        return 0
    n_aa, n_ab = target["aa_trials"], target["ab_trials"]
    ok = target["false_alarms"] <= max(1, n_aa // 20) and target["caught"] >= n_ab - max(1, n_ab // 20)
    print("interleaved, paired (the gate's default): " + ("targets met" if ok else "TARGETS MISSED")
          + " (at most 1 false alarm in 20, at least 19 catches in 20)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
