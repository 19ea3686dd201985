"""``accelbench gate``: judge a current measurement against a baseline (exit 0, 1 or 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench import gate as gatelib
from bench.cli.app import main

EPILOG_GATE = """\b
Examples:
  accelbench gate runs/pr --baseline runs/main -Q psnr:-1 -Q fid:+10%
  accelbench gate pr.json --baseline main.json           (pytest-benchmark JSON)
  accelbench run -s steps:n=10 -o runs/ci && \\
  accelbench gate runs/ci --baseline tests/benchmarks/baseline/digits-unet.json --latency speedup
      speedups measured interleaved now, against a committed baseline file
  accelbench run --baseline-src ../main-checkout -s bf16 -o runs/pr && \\
  accelbench gate runs/pr --baseline runs/pr/baseline
      this tree against another checkout, both measured in one interleaved run
  accelbench gate runs/pr --reference-strategy baseline --latency absolute
      every stack of one run against its baseline stack, round by round
  accelbench gate runs/pr --save-baseline baseline.json   (refresh a committed baseline)
  accelbench gate runs/pr --history history.sqlite --creep 5%
      each series of the run against its recent history (since its last change point)
  accelbench gate runs/ci --history sqlite:///h.sqlite --any-machine --metric speedup
      speedups (ratios that hold across machines) against every machine's history

`accelbench run` measures; the gate only judges. Exit status: 0 pass, 1 regression,
2 usage error (or inputs that cannot be compared).
"""


@main.command("gate", epilog=EPILOG_GATE)
@click.argument("current", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--baseline", "baselines", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Run directory, results.jsonl, pytest-benchmark JSON or gate baseline file "
                   "(repeatable).")
@click.option("--reference-strategy", default=None, metavar="SPEC",
              help="Instead of --baseline: compare every other stack of CURRENT with this stack "
                   "of the same run (e.g. baseline).")
@click.option("--max-slowdown", default="10%", show_default=True,
              help="Relative slowdown tolerated (10% or 0.10); larger ones count only if significant.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Significance level of the latency test, and the false discovery rate held "
                   "over all latency checks.")
@click.option("--margin", default="5%", show_default=True, metavar="PCT",
              help="Practical margin of 'equivalent' (a change whose interval lies within +-PCT).")
@click.option("--latency", "latency_mode", type=click.Choice(["absolute", "speedup", "off"]),
              default="absolute", show_default=True,
              help="Compare latencies (absolute), each stack's speedup over its own run's "
                   "baseline (speedup: holds across machines), or not at all.")
@click.option("--test", "latency_test", type=click.Choice(["auto", "mann-whitney"]), default="auto",
              show_default=True, help="auto: stacks of one interleaved run are compared round by "
                                      "round (paired); mann-whitney: always unpaired.")
@click.option("-Q", "--quality", "quality_rules", multiple=True,
              help="Quality rule (repeatable): psnr:-1, fid:+10%, ssim:0.02, adherence>=0.7, fid<=40, "
                   "fid<=floor (within the noise of the run's reference, as in tune).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the machine-readable verdict here.")
@click.option("--save-baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write CURRENT as a gate baseline file to commit.")
@click.option("--allow-settings-change", is_flag=True,
              help="Compare entries whose steps, resolution, dtype, threads, quality images, "
                   "batch size or device differ (by default that is exit 2, naming them).")
@click.option("--history", "history_store", default=None, metavar="STORE",
              help="Instead of --baseline: judge each series of CURRENT against its points in "
                   "this history store (SQLite path or SQLAlchemy URL): a regression is a point "
                   "outside what the series' recent segment predicts and worse by more than "
                   "--max-slowdown (quality: --max-quality-loss).")
@click.option("--creep", default=None, metavar="PCT",
              help="With --history: also fail on a drift worse than PCT over the last "
                   "--creep-window points that no single step reached (e.g. 5%).")
@click.option("--creep-window", default=8, show_default=True, type=click.IntRange(min=2),
              help="With --creep: points the drift is measured over.")
@click.option("--max-quality-loss", default="2%", show_default=True, metavar="PCT",
              help="With --history: how much worse a quality metric may be than its segment.")
@click.option("--metric", "metrics", multiple=True,
              help="With --history: judge only these metrics (repeatable; latency_ms, speedup, "
                   "relative_latency, energy_j_per_image, peak_memory_mb, psnr, ...).")
@click.option("--any-machine", is_flag=True,
              help="With --history: judge against every machine's points of the series, not "
                   "only this machine's (for ratios: speedup, quality).")
def gate_cmd(current, baselines, reference_strategy, max_slowdown, alpha, margin, latency_mode,
             latency_test, quality_rules, json_out, save_baseline, allow_settings_change,
             history_store=None, creep=None, creep_window=8, max_quality_loss="2%", metrics=(),
             any_machine=False) -> None:
    """Compare CURRENT with --baseline and exit 0 (pass), 1 (regression) or 2 (usage error).

    CURRENT and the baseline are run directories, results.jsonl files, pytest-benchmark JSON
    files or gate baseline files; entries are matched by model, strategy and batch size, and
    two entries whose settings differ (steps, resolution, dtype, threads, quality images, batch
    size, device) are not compared: exit 2 naming them, unless --allow-settings-change. A
    slowdown beyond --max-slowdown counts only when it is also called slower: two stacks of one
    interleaved run are compared round by round (sign test on per-round ratios), two separate
    runs through each run's machine-speed probe (the machine's change divided out), others
    with Mann-Whitney U, or by non-overlapping 95% intervals where raw samples were not kept;
    the false discovery rate is held at --alpha over the latency checks. Quality rules use
    each metric's declared direction; quality is deterministic for fixed seeds, so it needs no
    test.
    """
    rules = gatelib.Rules(
        latency=latency_mode,
        max_slowdown=gatelib.parse_fraction(max_slowdown, "--max-slowdown"),
        margin=gatelib.parse_fraction(margin, "--margin"),
        alpha=alpha,
        quality=tuple(gatelib.QualityRule.parse(r) for r in quality_rules),
        test=latency_test,
        allow_settings_change=allow_settings_change,
    )
    if reference_strategy and baselines:
        raise click.UsageError("give either --baseline or --reference-strategy, not both")
    if history_store:
        if baselines or reference_strategy or save_baseline or quality_rules:
            raise click.UsageError("--history judges against the store alone: leave out "
                                   "--baseline, --reference-strategy, --save-baseline and -Q")
        _gate_history(current, history_store, rules.max_slowdown, max_quality_loss, creep,
                      creep_window, metrics, any_machine, json_out)
    elif creep or metrics or any_machine:
        raise click.UsageError("--creep, --metric and --any-machine go with --history")
    if save_baseline:
        entries = gatelib.read_many(current)
        click.echo(f"baseline written: {gatelib.save_baseline(entries, save_baseline)}")
        if not baselines and not reference_strategy and not rules.quality:
            return
    if reference_strategy:
        verdict = gatelib.gate_against_reference(current, reference_strategy, rules)
    else:
        verdict = gatelib.gate_paths(current, baselines or None, rules)
    click.echo(gatelib.format_table(verdict))
    if json_out:
        click.echo(f"verdict: {gatelib.write_verdict(verdict, json_out)}", err=True)
    sys.exit(verdict.exit_code)


def _gate_history(current, store_url, max_slowdown, max_quality_loss, creep, creep_window,
                  metrics, any_machine, json_out) -> None:
    """``--history``: judge CURRENT against its series in the store, then exit."""
    from bench.history.gate import (
        HistoryRules,
        format_history,
        gate_history,
        write_history_verdict,
    )
    from bench.history.store import HistoryStore

    hrules = HistoryRules(
        threshold=max_slowdown,
        quality_threshold=gatelib.parse_fraction(max_quality_loss, "--max-quality-loss"),
        creep=gatelib.parse_fraction(creep, "--creep") if creep else None,
        creep_window=creep_window, metrics=tuple(metrics), any_machine=any_machine)
    store = HistoryStore(store_url, create=False)
    verdict = gate_history(store, list(current), hrules)
    click.echo(format_history(verdict))
    if json_out:
        click.echo(f"verdict: {write_history_verdict(verdict, json_out)}", err=True)
    sys.exit(verdict.exit_code)
